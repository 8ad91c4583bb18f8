"""Blob stores: where the uploaded bytes live, addressed by their SHA-256."""
