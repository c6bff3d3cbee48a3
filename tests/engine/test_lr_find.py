"""LR range test: restores the model exactly, suggests an LR before divergence; the CLI writes its plot."""

import torch
from torch import nn

from cnnlab.cli.main import main
from cnnlab.engine.lr_find import lr_find, suggest


def test_sweep_restores_weights_optimiser_and_rng_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 6, generator=g), torch.randint(0, 3, (256,), generator=g)
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng, gen_state = torch.get_rng_state(), g.get_state()
    res = lr_find(model, batches, opt, nn.CrossEntropyLoss(), 1e-5, 10.0, 60, generators=[g])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # BatchNorm running statistics included
    assert opt.param_groups[0]["lr"] == 0.01 and not opt.state  # no momentum left behind
    assert torch.equal(torch.get_rng_state(), rng) and torch.equal(g.get_state(), gen_state)
    assert res.lrs[0] == 1e-5 and 1e-5 < res.suggestion < res.lrs[-1]
    assert res.lrs == sorted(res.lrs) and "fastest" in res.reason


def test_suggestion_is_the_steepest_descent_before_the_minimum():
    lrs = [10 ** (-6 + i * 0.1) for i in range(60)]  # 1e-6 .. ~1e-0.1
    logs = torch.tensor([-6 + i * 0.1 for i in range(60)])
    loss = (2 - torch.tanh(3 * (logs + 3))).tolist()  # steepest at 1e-3, flat on both sides
    loss[50:] = [loss[49] + 0.5 * (i - 49) for i in range(50, 60)]  # divergence after 1e-1
    lr, _ = suggest(lrs, loss)
    assert abs(torch.log10(torch.tensor(lr)) + 3) < 0.15


def test_cli_writes_plot_and_prints_suggestion(tmp_path, capsys):
    out = tmp_path / "lr.png"
    code = main(
        ["lr-find", "--data", "digits", "--batch-size", "64", "--steps", "30", "--end", "1", "--output", str(out)]
        + ["--set", "train.threads=1"]
    )
    assert code == 0 and out.stat().st_size > 5000
    assert "suggested learning rate" in capsys.readouterr().out
