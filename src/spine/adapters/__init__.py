"""Adapters: concrete implementations of the ports in spine.ports."""
