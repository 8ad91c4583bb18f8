"""Benchmarks: `spine bench ...`. Numbers for the docs come from here, never from tests."""
