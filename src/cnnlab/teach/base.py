"""What every teaching figure shares: the result record (numbers + where the PNG/JSON went), a matplotlib
figure on an Agg canvas (no pyplot state), the writer of ``<name>.png`` + ``<name>.json``, and the one
sentence used wherever a source document prints a wrong value (``docs/seed-errata.md``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError, did_you_mean
from cnnlab.files import atomic


def correction(printed: str, correct: str, because: str) -> str:
    """The sentence every teach command uses where its source printed a wrong value."""
    return f"the source prints {printed}; the correct value is {correct}, because {because}."


def corrections_text(errata: list[tuple[str, str, str]]) -> list[str]:
    """One :func:`correction` line per (printed, correct, because), after a blank line (none: nothing)."""
    return [""] + [correction(*e) for e in errata] if errata else []


@dataclass
class TeachingResult:
    """Numbers behind one teaching figure, plus where the PNG and JSON went (None if not written)."""

    name: str
    values: dict[str, Any]
    panels: int = 0
    png: Path | None = None
    json: Path | None = None
    size_px: tuple[int, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def new_figure(width_in: float, height_in: float, dpi: int = 100):
    """A matplotlib Figure on an Agg canvas (no pyplot, so nothing global and no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_result(fig, result: TeachingResult, out_dir: str | Path | None) -> TeachingResult:
    """Write ``<name>.png`` and ``<name>.json`` (numbers, panel count, pixel size) into ``out_dir``."""
    result.panels = len(fig.axes)
    w_in, h_in = fig.get_size_inches()
    result.size_px = (round(w_in * fig.dpi), round(h_in * fig.dpi))
    if out_dir is None:
        return result
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.png = out / f"{result.name}.png"
    atomic.save_figure(fig, result.png, dpi=fig.dpi)  # no bbox="tight": the pixel size stays what the JSON says
    payload = {"name": result.name, "panels": result.panels, "size_px": list(result.size_px), "values": result.values}
    result.json = out / f"{result.name}.json"
    atomic.write_text(result.json, json.dumps(_jsonable(payload), indent=2) + "\n")
    return result


def _pick(table: dict[str, Any], name: str, what: str) -> dict[str, Any]:
    if name not in table:
        raise CnnlabError(f"unknown {what} example {name!r}.{did_you_mean(name, table)} Known: {', '.join(table)}.")
    return table[name]
