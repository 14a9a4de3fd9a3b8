"""Storage: SQLAlchemy 2 tables, engine set-up, repositories and Alembic migrations."""
