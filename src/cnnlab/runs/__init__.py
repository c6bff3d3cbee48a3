"""Runs: everything about a run folder in one place.

- :mod:`cnnlab.runs.folder`: the run-folder layout and its writers (torch-free).
- :mod:`cnnlab.runs.model_file`: the self-contained model file (safetensors + model.json).
- :mod:`cnnlab.runs.index`: the table behind ``cnnlab runs`` and ``cnnlab runs compare``.

The writers are re-exported here; this package imports neither torch nor NumPy, so the NumPy
engine uses it too.
"""

from cnnlab.runs.folder import (
    create_run_dir,
    default_run_name,
    env_info,
    git_sha,
    read_history_csv,
    read_json,
    write_history_csv,
    write_json,
)

__all__ = [
    "create_run_dir",
    "default_run_name",
    "env_info",
    "git_sha",
    "read_history_csv",
    "read_json",
    "write_history_csv",
    "write_json",
]
