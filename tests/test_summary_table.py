"""cnnlab.summary_table: the torch-free Summary and the per-layer summaries shipped for torchvision's networks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cnnlab.models import list_models
from cnnlab.models._common import TORCHVISION_BUILT
from cnnlab.models.summary import default_input_shape, default_num_classes, summary
from cnnlab.summary_table import SHIPPED, per_class, shipped_summary, summaries_text, summary_from_dict


def test_the_shipped_summaries_are_the_torchvision_built_models():
    shipped = json.loads(SHIPPED.read_text())["summaries"]
    assert sorted(shipped) == sorted(TORCHVISION_BUILT)
    assert {"vgg16", "resnet50", "densenet121", "googlenet", "alexnet"} <= TORCHVISION_BUILT <= set(list_models())


@pytest.mark.parametrize("name", sorted(TORCHVISION_BUILT))
def test_shipped_summary_is_the_network_built_now(name):
    # `cnnlab summary NAME` prints this entry instead of building the network; it must be what summary() says now
    built = summary(name)
    assert shipped_summary(name, None, None) == built, "zoo_summaries.json is stale: run scripts/build_model_table.py"
    own = default_input_shape(name)
    assert shipped_summary(name, own, default_num_classes(name)) == built
    # another class count moves the summary along its growth per class, measured at one class more: a
    # third count must give what the network built for it gives
    assert shipped_summary(name, None, 3) == summary(name, num_classes=3)


def test_shipped_summary_answers_only_for_the_models_own_input():
    assert shipped_summary("vgg16", (3, 64, 64), None) is None
    assert shipped_summary("vgg16", None, 0) is None
    assert shipped_summary("vgg16", (3, 224, 224), 10).output_shape == (10,)
    assert shipped_summary("resnet18_cifar", None, None) is None  # cnnlab's own networks are built


def test_growth_per_class_is_refused_where_the_layers_differ():
    assert per_class(summary("seed_cnn"), summary("lenet5")) is None
    growth = per_class(summary("seed_cnn"), summary("seed_cnn", num_classes=11))
    assert growth["summary"]["output_shape"] == [1] and len(growth["rows"]) == 1  # the last Linear only


def test_summaries_text_is_json_with_one_row_a_line():
    s = summary("seed_cnn")
    text = summaries_text({"seed_cnn": (s, 10, None)})
    assert len(text.splitlines()) == len(s.rows) + 4
    data = json.loads(text)
    entry = data["summaries"]["seed_cnn"]
    rows = [dict(zip(data["row_columns"], r, strict=True)) for r in entry.pop("rows")]
    assert entry.pop("num_classes") == 10 and entry.pop("per_class") is None
    assert summary_from_dict({**entry, "rows": rows}) == s
    assert summary_from_dict(s.to_dict()) == s


@pytest.mark.slow  # a fresh interpreter
def test_cli_summary_of_a_torchvision_network_imports_neither_torch_nor_torchvision():
    code = (
        "import contextlib, io, sys\nfrom cnnlab.cli.main import main\nout = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    assert main(['summary', 'vgg16']) == 0 and main(['summary', 'vgg16', '--classes', '10']) == 0\n"
        "assert 'Total params: 138,357,544' in out.getvalue(), out.getvalue()\n"
        "assert 'Total params: 134,301,514' in out.getvalue(), out.getvalue()\n"
        "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
