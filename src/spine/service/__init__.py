"""Use cases: what Spine does, written against the ports only."""
