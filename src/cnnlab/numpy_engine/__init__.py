"""numpy_engine."""
