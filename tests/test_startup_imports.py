"""Start-up stays light: the train path imports no heavy package it does not use (issue 18).

``import torchvision.models`` alone pulls in torch._dynamo (seconds); matplotlib, onnx, scipy,
sklearn and pandas cost hundreds of milliseconds each. Each check runs in a fresh interpreter and
reads ``sys.modules`` there, so an import added anywhere on the path (a module-level import in a
model family file, say) makes it fail.
"""

import json
import subprocess
import sys

HEAVY = ["torchvision", "torchvision.models", "matplotlib", "onnx", "onnxruntime", "scipy", "sklearn", "pandas"]


def loaded_after(code: str, tmp_path) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint('LOADED ' + json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("LOADED ")][-1]
    return json.loads(line[len("LOADED ") :])


def test_import_api_and_cli_parser_load_no_heavy_package(tmp_path):
    code = "import cnnlab, cnnlab.api\nfrom cnnlab.cli.main import build_parser\nbuild_parser()"
    assert loaded_after(code, tmp_path) == []


def test_cnnlab_train_without_plots_loads_no_heavy_package(tmp_path):
    # The whole command, data to metrics.json and the model file, on the bundled MNIST sample (the
    # digits data would load sklearn, which reads it: a package used, so not a package to avoid).
    argv = ["train", "--data", "mnist-sample", "--data.train_fraction", "0.2", "--epochs", "1", "--model", "fast_cnn"]
    argv += ["--out", str(tmp_path / "runs")]
    argv += ["--output.plots", "false", "--no-progress", "--train.threads", "1"]
    code = f"from cnnlab.cli.main import main\nassert main({argv!r}) == 0"
    assert loaded_after(code, tmp_path) == []
    assert list((tmp_path / "runs").glob("*/metrics.json"))  # it did train and evaluate


def test_building_a_torchvision_model_still_works(tmp_path):
    # The lazy import must not break the models that do need torchvision.
    code = (
        "import torch\nfrom cnnlab.models import create_model\n"
        "m = create_model('googlenet_cifar', num_classes=10, aux_logits=True).train()\n"
        "out = m(torch.zeros(2, 3, 32, 32))\nassert type(out).__name__ == 'GoogLeNetOutputs', type(out)"
    )
    assert "torchvision.models" in loaded_after(code, tmp_path)


def test_listing_the_zoo_imports_no_torch(tmp_path):
    # `cnnlab models` took 10.4 s (issue 30): the shipped table answers without building 60 models.
    code = (
        "import contextlib, io, sys\nfrom cnnlab.cli.main import main\nout = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n    assert main(['models']) == 0 and main(['models', 'resnet']) == 0\n"
        "assert 'torch' not in sys.modules, 'torch imported'\nassert '60 model(s)' in out.getvalue(), out.getvalue()"
    )
    assert loaded_after(code, tmp_path) == []
