"""One validator of model metadata for every reader: the model file's loader, open_run (torch and NumPy
runs), fine-tuning from a run and Predictor (issue 26: there were two, and open_run had none)."""

from __future__ import annotations

import json
import math

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.runs.meta import check_model_meta

GOOD = {"architecture": "x", "kwargs": {}, "classes": ["a", "b"], "input_shape": [1, 8, 8], "mean": [0.1], "std": [0.3]}
BAD = [
    ({"classes": ["a", "a"]}, "unique"),
    ({"classes": []}, "classes"),
    ({"classes": ["a", 3]}, "classes"),
    ({"input_shape": [2, 8, 8]}, "input_shape"),
    ({"input_shape": [1, 8, 9]}, "input_shape"),
    ({"input_shape": [1, True, 8]}, "input_shape"),
    ({"mean": [math.nan]}, "mean"),
    ({"mean": ["0.1"]}, "mean"),
    ({"std": [0.0]}, "positive"),
    ({"std": [0.3, 0.3]}, "std"),
    ({"resize_size": 4}, "resize_size"),
    ({"architecture": 7}, "architecture"),
    ({"kwargs": []}, "kwargs"),
]


@pytest.mark.parametrize("change, words", BAD)
def test_the_validator_names_the_key(change, words):
    check_model_meta(GOOD, "model.json")
    with pytest.raises(CnnlabError, match=words):
        check_model_meta({**GOOD, **change}, "model.json")


def test_exported_metadata_needs_no_builder():
    exported = {k: v for k, v in GOOD.items() if k not in ("architecture", "kwargs")}
    check_model_meta(exported, "the metadata", rebuild=False)
    with pytest.raises(CnnlabError, match="lacks architecture, kwargs"):
        check_model_meta(exported, "model.json")
    with pytest.raises(CnnlabError, match="not a JSON object"):
        check_model_meta([GOOD], "model.json")


@pytest.fixture(scope="module")
def numpy_run(tmp_path_factory):
    from cnnlab.scratch import ScratchConfig, fit

    out = tmp_path_factory.mktemp("runs")
    cfg = ScratchConfig(model="allconv", data="digits", epochs=1, output_root=str(out), progress=False)
    return fit(cfg, log=lambda _: None).run_dir


@pytest.mark.parametrize("change, words", BAD[:9])
def test_every_reader_refuses_a_tampered_model_json(numpy_run, tmp_path, change, words):
    """open_run used to accept any JSON object (a KeyError or a wrong answer came later); Predictor and the
    model-file loader had checks of their own that disagreed (the loader took [2, 8, 8] and NaN means)."""
    import shutil

    import torch

    from cnnlab.runs.model_file import load_model, save_model_file
    from cnnlab.runs.run import open_run
    from cnnlab.serve.predictor import Predictor

    run = tmp_path / "run"
    shutil.copytree(numpy_run, run)
    meta_path = run / "model" / "model.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), **change}))
    for read in (open_run, Predictor):
        with pytest.raises(CnnlabError, match=words):
            read(run)
    meta = {**GOOD, "architecture": "plain_mlp", "input_shape": [1, 4, 4]}
    folder = save_model_file(tmp_path / "m", torch.nn.Linear(2, 2), {**meta, **change})
    with pytest.raises(CnnlabError, match=words):
        load_model(folder)


def test_runs_and_predictor_share_one_numpy_forward_wrapper(numpy_run):
    import numpy as np
    import torch

    from cnnlab.runs.run import NumpyForward, open_run
    from cnnlab.serve.predictor import Predictor

    via_run, via_predictor = open_run(numpy_run).load_model(), Predictor(numpy_run).model
    assert type(via_run) is NumpyForward and type(via_predictor) is NumpyForward
    x = torch.from_numpy(np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32))
    assert torch.equal(via_run(x), via_predictor(x))
