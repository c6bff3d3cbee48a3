"""A model's per-layer summary as plain data (:class:`LayerRow`, :class:`Summary`), its text table, and the
summaries shipped with the package; no torch at import.

:mod:`cnnlab.models.summary` fills a :class:`Summary` from one forward pass. Building one of torchvision's
ImageNet-shaped networks means importing torchvision, which imports TorchDynamo (about 2 s of a 2-core
machine, more than the pass), so ``models/zoo_summaries.json`` holds those networks' summaries at their own
input and class count, with what one class more changes (``python scripts/build_model_table.py`` writes it;
a test rebuilds every entry, and each at a third class count, and compares), and ``cnnlab summary vgg16``
(``--classes 10`` too) prints one without importing torch. The file keeps one layer per line, so a change to
a network reads as a diff of the rows it changed.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, astuple, dataclass, field, fields
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError

SHIPPED = Path(__file__).resolve().parent / "models" / "zoo_summaries.json"


@dataclass
class LayerRow:
    """One executed leaf module. ``output_shape`` excludes the batch dimension."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int  # learnable parameters owned by this layer (0 when the module ran before)
    trainable: int
    macs: int  # per image
    rf: int  # receptive field (input pixels) of one output unit
    jump: int  # input-pixel distance between neighbouring output units
    activation_bytes: int  # size of this layer's output for one image


@dataclass
class Summary:
    """Result of :func:`cnnlab.models.summary.summary`; ``table()`` renders it, ``to_dict()`` serialises it."""

    model: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    rows: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    param_bytes: int = 0
    total_macs: int = 0
    activation_bytes: int = 0
    rf_exact: bool = True

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:  # print(cnnlab.summary(model, ...)) shows the table, as Keras does
        return self.table()

    def table(self, max_name: int = 40) -> str:
        """Keras-style text table with one row per executed layer and totals underneath."""
        head = ("Layer (type)", "Output shape", "Param #", "MACs", "RF", "Jump", "Act. mem")
        body = [
            (
                _clip(f"{r.name} ({r.type})", max_name),
                str(r.output_shape),
                f"{r.params:,}",
                f"{r.macs:,}",
                _rf_cell(r.rf, self.input_shape),
                str(r.jump),
                _bytes(r.activation_bytes),
            )
            for r in self.rows
        ]
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
        fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
        rule = "-" * len(fmt.format(*head))
        rf_note = "exact (sequential)" if self.rf_exact else "approximate: largest over merged branches (add/cat)"
        lines = [
            f"Model: {self.model}    input {shape_text(self.input_shape)} -> output {shape_text(self.output_shape)}",
            rule,
            fmt.format(*head),
            rule.replace("-", "="),
            *(fmt.format(*row) for row in body),
            rule.replace("-", "="),
            f"Total params: {self.total_params:,} ({_bytes(self.param_bytes)})",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.non_trainable_params:,}",
            f"MACs per image: {self.total_macs:,} ({_si(self.total_macs)})",
            f"Activation memory per image (all layer outputs): {_bytes(self.activation_bytes)}",
            f"Receptive field: {rf_note}",
        ]
        return "\n".join(lines)


def _rf_cell(rf: int, input_shape: tuple[int, ...]) -> str:
    """The receptive field, marked where it is larger than the input: such a unit sees the whole
    image (plus padding), so the number is the arithmetic's, clipped in effect to the input size."""
    side = max(input_shape[-2:]) if len(input_shape) >= 2 else None
    return f"{rf} (>{side}: whole input)" if side and rf > side else str(rf)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1) :]


def shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """``"3x32x32"`` (also ``3,32,32`` or ``3*32*32``) -> ``(3, 32, 32)``; a clear error otherwise."""
    parts = re.split(r"[x×,*]", text.strip().lower())
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise CnnlabError(f"bad input shape {text!r}: expected CxHxW with positive integers, e.g. 3x32x32 or 1x28x28.")
    c, h, w = (int(p) for p in parts)
    return c, h, w


def summary_from_dict(d: dict[str, Any]) -> Summary:
    """The :class:`Summary` that ``to_dict()`` gave ``d`` (shapes back to tuples)."""
    rows = [LayerRow(**{**r, "output_shape": tuple(r["output_shape"])}) for r in d["rows"]]
    shapes = {k: tuple(d[k]) for k in ("input_shape", "output_shape")}
    return Summary(**{**d, **shapes, "rows": rows})


def shipped_summary(name: str, input_shape: tuple[int, ...] | None, num_classes: int | None) -> Summary | None:
    """The shipped summary of model ``name`` where it answers the question (``input_shape`` None or the
    model's own; ``num_classes`` any count), else None: the model is then built and run.

    Another class count moves the summary along what one class more changes (``per_class``: the
    classifier's parameters, MACs, output width and memory are affine in the count), as ``cnnlab models
    --classes`` moves its rows; a test checks every entry at a third count against the network built for it.
    """
    table = json.loads(SHIPPED.read_text())
    entry = table["summaries"].get(name)
    if entry is None or input_shape not in (None, tuple(entry["input_shape"])):
        return None
    if num_classes is not None and num_classes < 1:  # the builder's refusal is the error to show
        return None
    extra = 0 if num_classes is None else num_classes - entry["num_classes"]
    if extra and entry["per_class"] is None:
        return None
    rows = [dict(zip(table["row_columns"], row, strict=True)) for row in entry["rows"]]
    head = {k: v for k, v in entry.items() if k not in ("num_classes", "per_class", "rows")}
    if extra:
        head = _moved(head, entry["per_class"]["summary"], extra)
        for i, delta in entry["per_class"]["rows"].items():
            rows[int(i)] = _moved(rows[int(i)], delta, extra)
    return summary_from_dict(head | {"rows": rows})


def _moved(values: dict[str, Any], delta: dict[str, Any], times: int) -> dict[str, Any]:
    """``values`` plus ``times`` x ``delta``, field by field (a shape element by element)."""
    out = dict(values)
    for key, d in delta.items():
        v = values[key]
        out[key] = [a + times * b for a, b in zip(v, d, strict=True)] if isinstance(v, list) else v + times * d
    return out


def _difference(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any] | None:
    """``b - a`` for the fields that differ, numbers and shapes of one length; None where another field differs."""
    delta = {}
    for key, x in a.items():
        y = b[key]
        if x == y:
            continue
        numbers = all(isinstance(v, int) and not isinstance(v, bool) for v in (x, y))
        shapes = isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)) and len(x) == len(y)
        if not (numbers or shapes):
            return None
        delta[key] = y - x if numbers else [q - p for p, q in zip(x, y)]
    return delta


def per_class(own: Summary, one_more: Summary) -> dict[str, Any] | None:
    """What one class more changes in a summary (``own`` at the model's class count, ``one_more`` at one
    more): per field of the totals and of each row that changes; None where the layers themselves differ."""
    if [(r.name, r.type) for r in own.rows] != [(r.name, r.type) for r in one_more.rows]:
        return None
    head = _difference(*({k: v for k, v in s.to_dict().items() if k != "rows"} for s in (own, one_more)))
    rows = {}
    for i, (a, b) in enumerate(zip(own.rows, one_more.rows, strict=True)):
        delta = _difference(asdict(a), asdict(b))
        if delta is None or head is None:
            return None
        if delta:
            rows[str(i)] = delta
    return {"summary": head, "rows": rows}


def summaries_text(summaries: dict[str, tuple[Summary, int, dict[str, Any] | None]]) -> str:
    """The text of ``zoo_summaries.json`` for ``{name: (summary at its own input, its class count, what one
    class more changes)}``: valid JSON with one layer row per line (a list in :class:`LayerRow`'s field order)."""
    entries = []
    for name, (s, num_classes, growth) in summaries.items():
        head = {k: v for k, v in s.to_dict().items() if k != "rows"} | {"num_classes": num_classes}
        head["per_class"] = growth
        rows = ",\n".join(json.dumps(list(astuple(r))) for r in s.rows)
        entries.append(f'{json.dumps(name)}: {json.dumps(head)[:-1]}, "rows": [\n{rows}\n]}}')
    columns = json.dumps([f.name for f in fields(LayerRow)])
    return f'{{"row_columns": {columns}, "summaries": {{\n' + ",\n".join(entries) + "\n}}\n"
