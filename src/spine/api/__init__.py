"""The HTTP edge: FastAPI routes, schemas and problem responses. No business logic."""
