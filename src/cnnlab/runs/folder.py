"""Run folders: one new folder per run under ``runs/``, never overwritten.

Layout (see docs/architecture.md): config.yaml, env.json, split.csv, history.csv, metrics.json,
model/ (weights.safetensors + model.json), checkpoints/ (last.pt, best.pt), plots/*.png.
NumPy-free and torch-free so the NumPy engine can use it too.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError

CV_CONFIG_FILE = "cv-config.yaml"  # marks the parent folder of a cross-validation (cnnlab.crossval)


def create_run_dir(root: str | Path = "runs", name: str = "run") -> Path:
    """Create ``root/name``; if it exists, ``root/name-2``, ``-3``, ... (mkdir is atomic, so two
    runs started at once never share a folder)."""
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
    """``<data>-<model>``; for an image folder its own name (``folder:~/photos`` -> ``photos``), not its path."""
    data = cfg.data.name
    if data.startswith("folder:"):
        data = Path(data[len("folder:") :]).expanduser().resolve().name or "folder"
    return f"{data}-{cfg.model.name.replace(':', '-')}"  # timm:NAME -> timm-NAME (no colon in folder names)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on success it is fsynced and renamed over
    ``path``, on any error it is removed, so a kill, a full disk or a failed export never leaves
    a half-written file under the final name.

    Example::

        with atomic_path("model.onnx") as tmp:
            torch.onnx.export(model, x, tmp)
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, data: Any) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def write_history_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """One row per epoch; columns are the union of keys in first-seen order."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)


def read_history_csv(path: str | Path) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) if v not in ("", None) else float("nan") for k, v in r.items()} for r in csv.DictReader(f)]


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
