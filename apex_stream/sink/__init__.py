"""Storage: the database schema (Alembic migrations in migrations/) and the sink."""
