"""``cnnlab lr-find``: the learning-rate range test on a training config; plot and suggestion."""

from __future__ import annotations

import argparse

from cnnlab.config import SHORT_KEYS


def add_parser(sub) -> None:
    p = sub.add_parser(
        "lr-find",
        help="sweep the learning rate and suggest one",
        description="Train briefly while the LR grows exponentially from --start to --end, plot the smoothed "
        "loss against the LR and suggest the LR of steepest descent before divergence. The model is not "
        "saved; the same options as 'cnnlab train' choose data, model, optimiser and loss.",
    )
    p.add_argument("--config", help="YAML config file (see configs/)")
    p.add_argument("--start", type=float, default=1e-7, help="first LR (default 1e-7)")
    p.add_argument("--end", type=float, default=10.0, help="last LR (default 10)")
    p.add_argument("--steps", type=int, default=100, help="number of batches (default 100)")
    p.add_argument("--out", default="lr_find.png", help="plot file (default lr_find.png)")
    for short, key in SHORT_KEYS.items():
        if short in ("download", "epochs", "out", "name"):
            continue
        p.add_argument("--" + short.replace("_", "-"), dest=f"cfg:{key}", default=argparse.SUPPRESS, metavar="VALUE")
    p.add_argument("--set", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"), help="any config key")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from cnnlab.api import build_model, make_config, resolve_device, seed_everything
    from cnnlab.data.datasets import load_dataset
    from cnnlab.data.pipeline import prepare_data
    from cnnlab.engine.losses import build_loss
    from cnnlab.engine.lr_find import lr_find, plot_lr_find
    from cnnlab.engine.optim import build_optimizer

    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:")}
    overrides.update(dict(args.set))
    cfg = make_config(args.config, overrides)
    device = resolve_device(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    ds = load_dataset(cfg.data.name, root=cfg.data.root, image_size=cfg.data.image_size, channels=cfg.data.channels)
    data = prepare_data(ds, cfg.data, cfg.train.seed, device, channels_last=cfg.train.channels_last)
    model = build_model(cfg, data.classes, data.input_shape).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, cfg.optim)
    loss_fn = build_loss(cfg.train.loss, label_smoothing=cfg.train.label_smoothing, gamma=cfg.train.focal_gamma)
    result = lr_find(model, data.train, opt, loss_fn, args.start, args.end, args.steps, generators=[data.generator])
    path = plot_lr_find(result, args.out)
    print(f"swept {len(result.lrs)} steps from {result.lrs[0]:.1e} to {result.lrs[-1]:.1e}")
    print(f"suggested learning rate: {result.suggestion:.2e}")
    print(f"why: {result.reason}")
    print(f"plot: {path}")
    return 0
