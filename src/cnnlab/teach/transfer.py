"""Transfer learning: which parameters each fine-tuning strategy trains, and at what learning rate.

A network trained on a large dataset has general early layers (edges, textures) and specific late
ones. Reusing it on a new task means replacing the head and choosing how much of the rest to train:
only the head (feature extraction: few parameters, for small datasets), the top blocks too, or
everything with a small learning rate; discriminative learning rates give lower blocks smaller
steps (Howard & Ruder 2018). The numbers are counted on a zoo model with
:mod:`cnnlab.finetune.transfer`, the code ``cnnlab train --finetune`` runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.teach.base import TeachingResult, new_figure, save_result

STRATEGY_RUNS = [("feature_extraction", {}), ("finetune_top", {"n_blocks": 1}), ("finetune_top", {"n_blocks": 2}),
                 ("finetune_all", {})]  # fmt: skip


def transfer_example(model_name: str = "resnet18_cifar", out_dir: str | Path | None = None) -> TeachingResult:
    """Trainable parameters per block for each strategy, and the discriminative LR of each block."""
    from cnnlab.finetune.transfer import apply_strategy, model_blocks, param_groups
    from cnnlab.models.summary import meta_model

    model = meta_model(model_name)  # counts only: no weights allocated or initialised
    blocks = [name for name, _ in model_blocks(model)]
    strategies: dict[str, Any] = {}
    for name, kw in STRATEGY_RUNS:
        apply_strategy(model, name, **kw)
        per_block = {b: sum(p.numel() for p in m.parameters() if p.requires_grad) for b, m in model_blocks(model)}
        label = name + (f" ({kw['n_blocks']})" if kw else "")
        strategies[label] = {"trainable": sum(per_block.values()), "per_block": per_block}
    total = sum(p.numel() for p in model.parameters())
    lrs = {g["name"]: g["lr"] for g in param_groups(model, 1e-3, 0.5)}
    fig = new_figure(12, 4)
    ax = fig.add_subplot(1, 2, 1)
    x = np.arange(len(blocks))
    for i, (label, s) in enumerate(strategies.items()):
        ax.bar(x + (i - 1.5) * 0.2, [max(s["per_block"][b], 1) for b in blocks], 0.2, label=label)
    ax.set_xticks(x, blocks, fontsize=7, rotation=30)
    ax.set_yscale("log")
    ax.set_ylabel("trainable parameters")
    ax.set_title(f"{model_name}: what each strategy trains", fontsize=9)
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 2, 2)
    ax.bar(list(lrs)[::-1], list(lrs.values())[::-1], color="tab:green")
    ax.set_yscale("log")
    ax.tick_params(axis="x", labelsize=7, rotation=30)
    ax.set_title("discriminative learning rates (head 1e-3, x0.5 per block down)", fontsize=9)
    fig.tight_layout()
    values = {"model": model_name, "blocks": blocks, "total": total, "strategies": strategies, "lrs": lrs}
    return save_result(fig, TeachingResult(f"transfer_{model_name}", values), out_dir)


def transfer_text(result: TeachingResult) -> str:
    v = result.values
    lines = [f"{v['model']}: {v['total']:,} parameters in blocks " + ", ".join(v["blocks"])]
    for label, s in v["strategies"].items():
        trained = [b for b in v["blocks"] if s["per_block"][b]]
        lines.append(f"  {label:<22} trains {s['trainable']:>10,} ({100 * s['trainable'] / v['total']:5.1f} %): "
                     + ", ".join(trained))  # fmt: skip
    lines.append("discriminative learning rates: " + ", ".join(f"{b} {lr:.3g}" for b, lr in v["lrs"].items()))
    return "\n".join(lines)
