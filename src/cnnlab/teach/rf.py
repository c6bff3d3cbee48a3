"""Receptive-field figure: how far into the image each layer's units can see.

For a stack of convolution and pooling layers (written as in ``cnnlab calc rf``, e.g. the seed
CNN's ``conv3,pool2,conv3,pool2,conv3,pool2``) this tracks, layer by layer, the receptive field
``rf``, the jump between neighbouring units and the input coordinate of the first unit's centre
(``start``), with the recurrences of Araujo et al., "Computing receptive fields of convolutional
neural networks" (Distill, 2019): ``rf += (k_eff - 1) jump``, ``start += ((k_eff - 1)/2 - p) jump``,
``jump *= stride``. One panel per layer draws the unit centres on the input grid and the square
seen by the middle unit. For the ``seed_cnn`` model's stack a source prints 3, 7, 15; the figure
shows 4, 10, 22 after its three pooling layers, and the text output says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.arithmetic import conv_output_size, effective_kernel, parse_layers, pool_output_size
from cnnlab.teach.base import TeachingResult, corrections_text, new_figure, save_result

SEED_CNN_LAYERS = "conv3,pool2,conv3,pool2,conv3,pool2"
RF_ERRATA = [("receptive fields 3, 7, 15 after the three conv-pool blocks", "4, 10, 22",
              "a 2x2 pool adds (2 - 1) * jump to the field and doubles the jump, so the next 3x3 conv adds 2 * jump; "
              "3, 7, 15 treats each pool as doubling the field itself")]  # fmt: skip


def receptive_field_table(layers: str, input_size: int) -> list[dict[str, Any]]:
    """One row per layer: name, output size, rf, jump and start (pixel centres at 0 .. n-1)."""
    rf, jump, start, size = 1, 1, 0.0, input_size
    rows = []
    for layer in parse_layers(layers):
        k, s, d, p = layer["kernel"], layer["stride"], layer["dilation"], layer["padding"]
        k_eff = effective_kernel(k, d)
        size_fn = conv_output_size if layer["kind"] == "conv" else pool_output_size
        size = size_fn(size, k, s, p, d)
        rf, start, jump = rf + (k_eff - 1) * jump, start + ((k_eff - 1) / 2 - p) * jump, jump * s
        rows.append({"name": layer["name"], "size": size, "rf": rf, "jump": jump, "start": start})
    return rows


def receptive_field_example(
    layers: str = SEED_CNN_LAYERS, input_size: int = 32, out_dir: str | Path | None = None
) -> TeachingResult:
    """One panel per layer: the input grid, every unit's centre (dots) and the middle unit's field."""
    from matplotlib.patches import Rectangle

    rows = receptive_field_table(layers, input_size)
    cols = min(3, len(rows))
    n_rows = -(-len(rows) // cols)
    fig = new_figure(3.6 * cols, 3.6 * n_rows)
    for i, row in enumerate(rows):
        ax = fig.add_subplot(n_rows, cols, i + 1)
        ax.add_patch(Rectangle((-0.5, -0.5), input_size, input_size, color="0.92"))
        centres = [row["start"] + j * row["jump"] for j in range(row["size"])]
        xs = [c for c in centres for _ in centres]
        ys = [c for _ in centres for c in centres]
        ax.scatter(xs, ys, s=max(1.0, 60.0 / row["size"]), color="tab:blue")
        mid = centres[row["size"] // 2]
        half = row["rf"] / 2
        ax.add_patch(Rectangle((mid - half, mid - half), row["rf"], row["rf"], fill=False, ec="red", lw=2))
        pad = max(0.0, half - min(mid, input_size - 1 - mid)) + 1
        ax.set_xlim(-pad - 0.5, input_size - 0.5 + pad)
        ax.set_ylim(input_size - 0.5 + pad, -pad - 0.5)
        ax.set_aspect("equal")
        if i % cols == 0:
            ax.set_ylabel("input row (pixel)", fontsize=8)
        if i >= len(rows) - cols:
            ax.set_xlabel("input column (pixel)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.set_title(
            f"{i + 1}. {row['name']}: {row['size']}x{row['size']}, RF {row['rf']}, jump {row['jump']}", fontsize=8
        )
    fig.suptitle(
        f"receptive field on a {input_size}x{input_size} input (dots: unit centres; red: the middle unit's field)"
    )
    values = {"layers": layers, "input_size": input_size, "rows": rows}
    default = (layers, input_size) == (SEED_CNN_LAYERS, 32)
    # a custom stack gets its own file name, so it never overwrites the default example's figure
    name = "receptive_field" if default else f"receptive_field_{layers.replace(',', '_')}_in{input_size}"
    extra = {"errata": RF_ERRATA if default else []}
    return save_result(fig, TeachingResult(name, values, extra=extra), out_dir)


def receptive_field_text(result: TeachingResult) -> str:
    lines = [f"{'#':>2}  {'layer':<10}{'size':>6}{'RF':>6}{'jump':>6}{'start':>7}"]
    for i, r in enumerate(result.values["rows"], 1):
        lines.append(f"{i:>2}  {r['name']:<10}{r['size']:>6}{r['rf']:>6}{r['jump']:>6}{r['start']:>7g}")
    lines.append("rf += (k_eff - 1)*jump;  start += ((k_eff - 1)/2 - p)*jump;  jump *= stride")
    return "\n".join(lines + corrections_text(result.extra.get("errata", [])))
