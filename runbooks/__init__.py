"""Runbooks as code and the engine that runs them (later issues)."""
