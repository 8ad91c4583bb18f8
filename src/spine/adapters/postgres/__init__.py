"""The scale-out database: PostgreSQL with pgvector, through psycopg 3."""
