import json

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.runs.model_file import load_model, save_model_file


def test_round_trip_gives_identical_outputs_without_pickle(tmp_path):
    torch.manual_seed(0)
    model = create_model("seed_cnn", num_classes=4, in_channels=1, input_size=28).eval()
    meta = {
        "architecture": "seed_cnn",
        "kwargs": {},
        "classes": list("abcd"),
        "input_shape": [1, 28, 28],
        "mean": [0.13],
        "std": [0.31],
    }
    save_model_file(tmp_path / "m", model.to(memory_format=torch.channels_last), meta)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "weights.safetensors"]
    assert json.loads((tmp_path / "m" / "model.json").read_text())["classes"] == list("abcd")
    loaded, back = load_model(tmp_path / "m")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    x = torch.randn(3, 1, 28, 28)  # channels_last vs contiguous kernels differ only in rounding
    torch.testing.assert_close(model(x), loaded(x), rtol=1e-5, atol=1e-6)
    assert back["mean"] == [0.13] and back["input_shape"] == [1, 28, 28]
    # the weights file is safetensors: an 8-byte header length then JSON, never a pickle
    raw = (tmp_path / "m" / "weights.safetensors").read_bytes()
    assert raw[8:9] == b"{" and b"\x80\x02" not in raw[:16]


def test_missing_meta_keys_and_bad_paths(tmp_path):
    model = create_model("plain_mlp", num_classes=2, in_channels=1, input_size=4)
    with pytest.raises(ValueError, match="classes"):
        save_model_file(tmp_path / "m", model, {"architecture": "plain_mlp", "kwargs": {}})
    with pytest.raises(CnnlabError, match="not a cnnlab model"):
        load_model(tmp_path / "nowhere")


def test_custom_net_model_file_needs_no_spec_file(tmp_path):
    import shutil
    from pathlib import Path

    import cnnlab

    spec = tmp_path / "net.yaml"
    shutil.copy(Path(__file__).resolve().parents[2] / "configs" / "models" / "small_cnn.yaml", spec)
    r = cnnlab.train(
        data="digits",
        model="custom",
        epochs=1,
        out=tmp_path / "runs",
        log=lambda s: None,
        overrides={"model.kwargs": {"spec": str(spec)}, "output.progress": False, "output.plots": False},
    )
    spec.unlink()  # the model file must carry the layer list itself
    model, meta = load_model(r.run_dir)
    assert isinstance(meta["kwargs"]["spec"], list)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
