"""Data: raw-format readers, the dataset registry, splits and normalisation statistics.

This package is NumPy/Pillow only (no torch import at module level) so that the NumPy engine can
use the same datasets; torch loaders live in ``cnnlab.data.loaders``.
"""
