"""Storage: the database schema (Alembic migrations in resources/migrations/) and the sink."""
