"""Evaluation: pure metric functions of arrays (NumPy only)."""
