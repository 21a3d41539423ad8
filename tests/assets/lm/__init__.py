"""A small story corpus that the project generates itself (no dataset hub is reachable)."""
