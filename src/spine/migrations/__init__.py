"""Alembic migrations: the one history of Spine's schema, for every database."""
