"""Run folders: one new folder per run under ``runs/``, never overwritten.

Layout (see docs/architecture.md): config.yaml, env.json, split.csv, history.csv, metrics.json,
model/ (weights.safetensors + model.json), checkpoints/ (last.pt, best.pt), plots/*.png.
NumPy-free and torch-free so the NumPy engine can use it too.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from cnnlab import readers
from cnnlab.errors import CnnlabError
from cnnlab.files import atomic, tables

CV_CONFIG_FILE = "cv-config.yaml"  # marks the parent folder of a cross-validation (cnnlab.crossval)

MAX_NAME_CHARS = 200  # room for "-N" and the temporary-file names inside within the 255-byte limit


def check_folder_name(name: str, what: str = "output.name (--name)") -> str:
    """``name`` when it names one folder inside the output folder; a path, ``..`` or an empty name is refused.

    ``--name ../../x`` would otherwise put the run outside ``--out``, and ``--name a/b`` a folder
    that other commands do not find.
    """
    bad = (
        not isinstance(name, str)
        or name.strip() in ("", ".", "..")
        or any(sep and sep in name for sep in ("/", "\\", os.sep, os.altsep))
        or "\0" in name
        or len(name) > MAX_NAME_CHARS
    )
    if bad:
        raise CnnlabError(
            f"{what} must be one folder name (no '/', no '..', at most {MAX_NAME_CHARS} characters), got {name!r}; "
            "choose where it goes with output.root (--out)"
        )
    return name


def create_run_dir(root: str | Path = "runs", name: str = "run") -> Path:
    """Create ``root/name``; if it exists, ``root/name-2``, ``-3``, ... (mkdir is atomic, so two
    runs started at once never share a folder). ``name`` must be one folder name (:func:`check_folder_name`)."""
    check_folder_name(name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 100_000):
        path = root / (name if i == 1 else f"{name}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"no free run folder name under {root}")


def refuse_cv_parent(path: str | Path) -> None:
    """Raise the one clear error for a cross-validation's parent folder given where a run or model is
    expected: it holds no model of its own, its fold runs do (named, so the user can pick one)."""
    p = Path(path)
    if not (p / CV_CONFIG_FILE).is_file():
        return
    folds = sorted(
        (d.name for d in p.glob("fold-*") if d.is_dir()),
        key=lambda n: int(n[5:]) if n[5:].isdigit() else 1 << 30,
    )
    which = f"fold-K ({', '.join(folds)}), e.g. {p / folds[0]}" if folds else "fold-K once 'cnnlab cv' has trained one"
    raise CnnlabError(
        f"{p} is a cross-validation folder (it holds {CV_CONFIG_FILE}, cv.json and one run per fold), not a "
        f"run or model; use one of its folds: {which}"
    )


def default_run_name(cfg: Any) -> str:
    """``<data>-<model>``; for image files a short name, not a path (``folder:~/photos`` -> ``photos``,
    ``csv:~/pets/labels.csv`` -> ``pets-labels``)."""
    from cnnlab.data.datasets import file_data  # local: NumPy

    data = cfg.data.name
    found = file_data(data)
    if found is not None:
        data = found[0].run_name(Path(found[1]).expanduser().resolve()) or "data"
    model = cfg.model.name.replace(":", "-").replace("/", "-").replace("\\", "-")  # timm:a/b -> timm-a-b
    return f"{data}-{model}"[:MAX_NAME_CHARS]  # one folder name: no colon, no separator, not too long


def write_json(path: str | Path, data: Any) -> None:
    """``data`` as indented JSON, written atomically."""
    atomic.write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    """A JSON file of a run folder (a mapping), with the size and nesting limits of ``cnnlab.readers``."""
    return readers.read_json(path)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def write_history_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """One row per epoch; columns are the union of keys in first-seen order. Written atomically, so a
    kill during an epoch's write leaves the previous epoch's file whole."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    with atomic.atomic_write(path, "w", newline="") as f:
        w = tables.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)


def read_history_csv(path: str | Path) -> list[dict[str, float]]:
    """history.csv's rows as numbers (an empty cell is NaN); CnnlabError naming the file when malformed."""
    return [{k: readers.csv_float(v, str(path)) for k, v in r.items()} for r in readers.read_csv(path)]


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def env_info(**extra: Any) -> dict[str, Any]:
    """Versions and machine facts that shaped a run (torch versions only when torch is loaded)."""
    from cnnlab import __version__

    info: dict[str, Any] = {
        "cnnlab": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "git_sha": git_sha(),
        "argv": sys.argv,
    }
    for mod in ("numpy", "torch", "torchvision"):
        if mod in sys.modules:
            info[mod] = getattr(sys.modules[mod], "__version__", None)
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    info.update(extra)
    return info
