"""The Triton model repository of ``cnnlab export --format triton``: parsed by Triton's own ModelConfig
message, the ONNX file in it parity-checked, and served by nothing but ONNX Runtime to the same answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnlab.cli.main import main
from cnnlab.errors import CnnlabError
from cnnlab.export.triton import export_triton, read_triton_config, triton_config

pytest.importorskip("onnxruntime")


def test_repository_layout_and_config_parse_with_tritons_own_types(random_model, tmp_path):
    pytest.importorskip("tritonclient.grpc")
    folder, report = export_triton(random_model, tmp_path / "repo", name="pets", exporter="legacy", parity_n=8)
    assert report.ok and folder == tmp_path / "repo" / "pets"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
        "1",
        "1/model.onnx",
        "config.pbtxt",
        "labels.txt",
    ]
    assert (folder / "labels.txt").read_text() == "cat\ndog\nfox\n"
    cfg = read_triton_config(folder / "config.pbtxt")
    assert cfg.name == "pets" and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 64
    assert cfg.input[0].name == "input" and list(cfg.input[0].dims) == [3, 16, 16]
    assert cfg.input[0].data_type == cfg.input[0].data_type.__class__(11)  # TYPE_FP32
    assert cfg.output[0].name == "logits" and list(cfg.output[0].dims) == [3]
    assert cfg.output[0].label_filename == "labels.txt" and cfg.HasField("dynamic_batching")
    info = json.loads(cfg.parameters["cnnlab"].string_value)
    assert info["mean"] == [0.5, 0.4, 0.3] and info["classes"] == ["cat", "dog", "fox"]
    assert "nonexistent" not in (folder / "config.pbtxt").read_text()  # no paths leak into the repository


def test_onnx_in_the_repository_answers_like_the_model(random_model, tmp_path):
    import onnxruntime as ort
    import torch

    from cnnlab.runs.model_file import load_model

    folder, _ = export_triton(random_model, tmp_path, name="pets", exporter="legacy", parity_n=4)
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(5, 3, 16, 16)).astype(np.float32)
    (logits,) = session.run(["logits"], {"input": x})
    model, _ = load_model(random_model)
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(torch.from_numpy(x)).numpy(), atol=1e-4)


def test_odd_class_names_are_escaped_so_the_config_still_parses():
    pytest.importorskip("tritonclient.grpc")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    meta = {"classes": ['say "hi"', "back\\slash", "café ☕"], "input_shape": [1, 8, 8], "mean": [0.5], "std": [0.5]}
    meta["architecture"] = "seed_cnn"
    cfg = text_format.Parse(triton_config("m", meta), model_config_pb2.ModelConfig())
    assert json.loads(cfg.parameters["cnnlab"].string_value)["classes"] == meta["classes"]


def test_cli_writes_the_repository_and_refuses_bad_values(random_model, tmp_path, capsys):
    assert main(["export", str(random_model), "--format", "triton", "--out", str(tmp_path), "--exporter", "legacy",
                 "--parity-n", "4", "--model-name", "pets"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "Triton model repository" in out and "-> OK" in out and (tmp_path / "pets" / "config.pbtxt").is_file()
    with pytest.raises(CnnlabError, match="model name"):
        export_triton(random_model, tmp_path, name="../escape")
    with pytest.raises(CnnlabError, match="max-batch-size"):
        export_triton(random_model, tmp_path, name="x", max_batch_size=0)
    assert main(["export", str(random_model), "--format", "triton", "--output", str(tmp_path / "f")]) == 1
    assert "--out" in capsys.readouterr().err


def _manifests() -> list[dict]:
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    return [m for m in map(yaml.safe_load, blocks) if isinstance(m, dict) and m.get("kind") == "InferenceService"]


def test_inference_service_manifests_in_the_docs_are_well_formed():
    import re
    import shlex

    from cnnlab.cli.main import build_parser

    manifests = _manifests()
    assert len(manifests) == 2
    for m in manifests:
        assert m["apiVersion"] == "serving.kserve.io/v1beta1"
        assert re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", m["metadata"]["name"])  # DNS-1123 label
        predictor = m["spec"]["predictor"]
        if "model" in predictor:  # Triton runtime on the exported repository
            assert predictor["model"]["modelFormat"]["name"] == "triton"
            assert predictor["model"]["protocolVersion"] == "v2" and predictor["model"]["storageUri"]
            continue
        (container,) = predictor["containers"]
        args = container["args"]
        assert args[:2] == ["cnnlab", "serve"] and container["name"] == "kserve-container"
        parsed = build_parser().parse_args(["serve", "model", *args[3:]])
        assert parsed.port == container["ports"][0]["containerPort"] == container["readinessProbe"]["httpGet"]["port"]
        assert parsed.model_name == m["metadata"]["name"] and parsed.host == "0.0.0.0"
        assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert shlex.join(args)  # plain strings throughout
