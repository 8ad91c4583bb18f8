"""The embedded default: one SQLite file holds documents, the queue and both indexes."""
