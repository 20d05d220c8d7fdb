"""Models: built-in nets, building from a spec, loading weights, introspection."""
