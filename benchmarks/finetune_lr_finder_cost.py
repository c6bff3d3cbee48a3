"""The LR finder's cost in the fine-tune recipe, before and after (for finetune_photos.py).

Builds the recipe's starting network exactly as ``cnnlab train --pretrained`` does (the workflow's own
steps: frozen body, zero head) on the photo folder, then times the old probe (60 batches of the training
batch size, 128; ``--no-before`` skips it), the bounded one the recipe runs (about one pass over the
training photos in small batches) and the LP-FT head fit on the frozen features
(``finetune.head.fit_head``, ``model.head_init=fit``). Prints one JSON line.

    python benchmarks/finetune_lr_finder_cost.py --photos PHOTOS --weights lite0.safetensors --image-size 80
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

from cnnlab.api import make_config
from cnnlab.engine.lr_find import lr_find
from cnnlab.engine.optim import build_optimizer
from cnnlab.finetune.head import fit_head
from cnnlab.finetune.recipe import find_head_lr, probe_plan
from cnnlab.workflow import build_parts, load_data, start_session

OLD_BATCH = 128  # the old probe: 60 batches of the default training batch size


class Merged:
    """The loader's (small) batches joined into batches of ``size`` images, as the old probe saw them."""

    def __init__(self, loader, size: int):
        self.loader, self.size = loader, size

    def __iter__(self):
        xs, ys, n = [], [], 0
        for x, y in self.loader:
            xs.append(x)
            ys.append(y)
            n += len(y)
            if n >= self.size:
                yield torch.cat(xs)[: self.size], torch.cat(ys)[: self.size]
                xs, ys, n = [], [], 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--photos", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--no-before", action="store_true", help="skip the old 60 x 128 probe (minutes at 96 px)")
    args = p.parse_args(argv)
    overrides = {"data.name": f"folder:{args.photos}", "model.name": "timm:efficientnet_lite0"}
    overrides |= {"model.pretrained": args.weights, "data.image_size": args.image_size, "output.progress": False}
    overrides |= {"model.head_init": "zero"}  # the finder probes a zero head (the default, said explicitly)
    session = start_session(make_config(None, overrides), log=lambda line: None)
    _, data = load_data(session)
    parts = build_parts(session, data, find_lr=False)
    optim = replace(session.cfg.optim, group_lr={})
    row = {}
    if not args.no_before:
        t0 = time.perf_counter()
        probe = build_optimizer(parts.model, optim)
        old = lr_find(parts.model, Merged(data.train, OLD_BATCH), probe, parts.loss_fn, 1e-6, 1.0, 60, beta=0.95)
        row = {"before_s": time.perf_counter() - t0, "before_steps": len(old.lrs), "before_batch": OLD_BATCH}
    t1 = time.perf_counter()
    find_head_lr(parts.model, data.train, optim, parts.loss_fn, log=lambda line: None, progress=False)
    t2 = time.perf_counter()
    fit_head(parts.model, data.train.unaugmented(), log=lambda line: None)
    t3 = time.perf_counter()
    batch, steps = probe_plan(data.train.num_samples, data.train.batch_size)
    row |= {"after_s": t2 - t1, "after_steps": steps, "after_batch": batch, "train_images": data.train.num_samples}
    row |= {"head_fit_s": t3 - t2}
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
