"""BLAS threads of the NumPy engine: how many there are, and a limit for a run of small matrices.

The engine's matrix products run in the BLAS library NumPy links (OpenBLAS, MKL), whose thread
count :mod:`threadpoolctl` (installed with scikit-learn) reads and limits; without it both
functions do nothing. Used by ``cnnlab scratch train`` and the teaching examples.
"""

from __future__ import annotations

from typing import Any


def thread_limit(threads: int | None) -> Any:
    """Limit BLAS threads (a context manager that also restores them on ``restore_original_limits``);
    None when ``threads`` is None or threadpoolctl is missing."""
    if threads is None:
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(threads)


def blas_threads() -> int | None:
    """The BLAS library's thread count, or None when unknown."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    counts = [i.get("num_threads") for i in threadpool_info() if i.get("user_api") == "blas"]
    return counts[0] if counts else None
