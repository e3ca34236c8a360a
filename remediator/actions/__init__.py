"""Actions: each a named kind declaring its parameters, bounds, permissions and verification."""
