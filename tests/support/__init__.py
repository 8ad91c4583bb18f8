"""Helpers shared by the tests: document makers and API helpers."""
