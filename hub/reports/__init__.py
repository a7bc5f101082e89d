"""Documents the hub writes for people: statements, usage exports, the yearly review."""
