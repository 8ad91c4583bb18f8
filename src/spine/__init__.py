"""Spine: self-hostable multi-tenant document search."""

__version__ = "0.1.0"
