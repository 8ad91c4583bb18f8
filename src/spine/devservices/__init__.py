"""Local servers for tests and for the scale-out topology on one machine; Spine never imports it."""
