"""The database: engine and session factories, the shared tables, Alembic migrations."""
