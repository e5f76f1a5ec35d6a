"""lapse: an account lifecycle engine driven by a declarative policy."""
