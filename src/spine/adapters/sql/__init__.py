"""Relational storage with SQLAlchemy Core: tables, repositories, the job queue."""
