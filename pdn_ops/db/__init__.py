"""Database access: engine and session factories, tables, queries and Alembic migrations."""
