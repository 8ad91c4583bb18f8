"""Entities and rules of Spine. Nothing in here does I/O."""
