"""Shared plumbing: engine and sessions, tables, Alembic migrations, the outbox worker, the DC client."""
