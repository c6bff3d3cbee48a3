"""Published weights without the internet: a local HTTP server on 127.0.0.1 stands in for download.pytorch.org.

The served files are made here; their SHA-256 prefix goes into the file name exactly as torchvision's
does (``resnet18-f37072fd.pth``), and the torchvision enum lookup is patched to point at the server.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.finetune import weights as W
from cnnlab.runs.model_file import load_model

QUIET = {"output.progress": False, "output.plots": False, "train.threads": 1}


class _Server:
    """http.server in a thread, serving one folder and counting GET requests."""

    def __init__(self, folder: Path):
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):  # keep pytest's output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    s = _Server(folder)
    s.folder = folder
    yield s
    s.close()


def _publish(folder: Path, state: dict, stem: str = "tiny", wrong_hash: bool = False) -> str:
    """Save ``state`` as ``stem-<sha256 prefix>.pth`` in ``folder`` (torchvision's naming); return the file name."""
    tmp = folder / "tmp.pth"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    name = f"{stem}-{'deadbeef' if wrong_hash else digest[:8]}.pth"
    tmp.rename(folder / name)
    return name


def _dead_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_checks_the_hash_and_is_reused_from_the_cache(server, tmp_path):
    name = _publish(server.folder, {"w": torch.arange(6.0)})
    cache = tmp_path / "cache"
    path = W.fetch_weights(f"{server.url}/{name}", cache=cache, progress=False)
    assert path == cache / name and path.read_bytes() == (server.folder / name).read_bytes()
    assert server.requests == [f"/{name}"]
    again = W.fetch_weights(f"{server.url}/{name}", cache=cache, progress=False)
    assert again == path and len(server.requests) == 1  # second time: no request at all
    assert _leftovers(cache) == [name]  # no temporary files beside it


def test_wrong_hash_is_refused_and_nothing_is_kept(server, tmp_path):
    name = _publish(server.folder, {"w": torch.ones(3)}, wrong_hash=True)
    cache = tmp_path / "cache"
    with pytest.raises(CnnlabError, match="sha256 starts .* not deadbeef .*it was not kept"):
        W.fetch_weights(f"{server.url}/{name}", cache=cache, progress=False)
    assert _leftovers(cache) == []


def test_offline_names_the_url_and_the_folder_and_leaves_nothing(tmp_path):
    url = f"http://127.0.0.1:{_dead_port()}/resnet18-f37072fd.pth"
    cache = tmp_path / "cache"
    with pytest.raises(CnnlabError) as err:
        W.fetch_weights(url, cache=cache, progress=False)
    msg = str(err.value)
    assert url in msg and f"{cache}/" in msg and "resnet18-f37072fd.pth" in msg
    assert _leftovers(cache) == []


def test_a_corrupt_file_in_the_cache_is_named(server, tmp_path):
    name = _publish(server.folder, {"w": torch.zeros(2)})
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / name).write_bytes(b"not the published bytes")
    with pytest.raises(CnnlabError, match=f"{cache / name} is not the published file.*Delete it"):
        W.fetch_weights(f"{server.url}/{name}", cache=cache, progress=False)


def test_mirror_folder_from_the_environment_is_used_without_a_download(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    name = _publish(mirror, {"w": torch.ones(4)})
    monkeypatch.setenv(W.MIRROR_ENV, str(mirror))
    url = f"http://127.0.0.1:{_dead_port()}/{name}"  # would fail if it were tried
    assert W.fetch_weights(url, cache=tmp_path / "cache", progress=False) == mirror / name
    (mirror / name).write_bytes(b"tampered")
    with pytest.raises(CnnlabError, match="is not the published file"):
        W.fetch_weights(url, cache=tmp_path / "cache", progress=False)


def test_mirror_url_replaces_the_published_host(server, tmp_path):
    name = _publish(server.folder, {"w": torch.ones(5)})
    dead = f"http://127.0.0.1:{_dead_port()}/models/{name}"
    path = W.fetch_weights(dead, cache=tmp_path / "cache", mirror=server.url + "/", progress=False)
    assert path.is_file() and server.requests == [f"/{name}"]


def test_file_names_without_a_hash_are_refused():
    with pytest.raises(CnnlabError, match="carries no hash"):
        W.hash_prefix("weights.pth")
    assert W.hash_prefix("resnet18-f37072fd.pth") == "f37072fd"


def test_torchvision_enums_give_url_and_preprocessing():
    entry = W.torchvision_weights("resnet50", "IMAGENET1K_V2")
    assert entry.url.endswith(".pth") and W.hash_prefix(entry.url.rsplit("/", 1)[1])
    pre = W.preprocessing_of(entry, "resnet50")
    assert (pre.weights, pre.image_size, pre.resize_size) == ("ResNet50_Weights.IMAGENET1K_V2", 224, 232)
    assert pre.mean == pytest.approx([0.485, 0.456, 0.406]) and pre.interpolation == "bilinear"
    assert W.torchvision_weights("resnet50").name == "IMAGENET1K_V2"  # DEFAULT is torchvision's best set
    # GoogLeNet's weights expect transform_input=True, i.e. (x - 0.5) / 0.5 on [0, 1] pixels
    assert W.preprocessing_of(W.torchvision_weights("googlenet"), "googlenet").mean == [0.5] * 3


@pytest.mark.parametrize(
    ("model", "weights", "message"),
    [
        ("seed_cnn", None, "no published ImageNet weights for model 'seed_cnn'.*resnet18"),
        ("resnet18", "IMAGENET1K_V9", "ResNet18_Weights has no weights 'IMAGENET1K_V9'.*IMAGENET1K_V1"),
    ],
)
def test_unknown_models_and_sets_are_named(model, weights, message):
    with pytest.raises(CnnlabError, match=message):
        W.resolve_pretrained(model, "imagenet", weights)


def test_local_files_keep_the_data_statistics(tmp_path):
    got = W.resolve_pretrained("resnet18", str(tmp_path / "mine.pth"))
    assert got.path == tmp_path / "mine.pth" and got.preprocessing is None
    assert W.resolve_pretrained("resnet18") is None
    with pytest.raises(CnnlabError, match="give one of them"):
        W.resolve_pretrained("resnet18", str(tmp_path / "mine.pth"), "IMAGENET1K_V1")


def test_grey_models_get_channel_averaged_statistics():
    pre = W.Preprocessing("x", 224, 256, [0.3, 0.6, 0.9], [0.1, 0.2, 0.3], "bilinear")
    assert pre.stats(3) == ([0.3, 0.6, 0.9], [0.1, 0.2, 0.3])
    mean, std = pre.stats(1)
    assert mean == pytest.approx([0.6]) and std == pytest.approx([0.2])


class MobileNet_V2_Weights(SimpleNamespace):  # noqa: N801 - named like torchvision's enum, for the log line
    pass


def _fake_entry(url: str, crop: int):
    """What torchvision's enum member offers: url, name, transforms() (its real preset class)."""
    from torchvision.transforms._presets import ImageClassification

    transforms = partial(ImageClassification, crop_size=crop, resize_size=crop * 8 // 7)  # 224 -> 256 scaled down
    return MobileNet_V2_Weights(url=url, name="IMAGENET1K_V1", transforms=transforms)


def test_train_with_imagenet_weights_end_to_end(server, tmp_path, monkeypatch):
    """--pretrained imagenet: download, load into the body, the weights' size and mean/std in the model file."""
    import torchvision

    torch.manual_seed(0)
    published = torchvision.models.mobilenet_v2(weights=None).state_dict()  # stands in for the ImageNet file
    name = _publish(server.folder, published, stem="mobilenet_v2")
    monkeypatch.setattr(W, "torchvision_weights", lambda model, weights=None: _fake_entry(f"{server.url}/{name}", 32))
    monkeypatch.setenv(W.CACHE_ENV, str(tmp_path / "cache"))
    lines = []
    r = cnnlab.train(
        data="mnist-sample",
        model="mobilenet_v2",
        pretrained="imagenet",
        finetune="feature_extraction",
        epochs=1,
        out=tmp_path / "runs",
        overrides={**QUIET, "data.train_fraction": 0.1, "data.channels": 3},
        log=lines.append,
    )
    assert (tmp_path / "cache" / "weights" / name).is_file()
    assert any(s.startswith("pretrained weights MobileNet_V2_Weights.IMAGENET1K_V1") and "32x32" in s for s in lines)
    assert any(s.startswith(f"loaded {len(published) - 2} pretrained tensors from {server.url}/{name}") for s in lines)
    model, meta = load_model(r.run_dir)
    assert meta["input_shape"] == [3, 32, 32]  # the weights' crop size became the image size
    assert meta["mean"] == pytest.approx([0.485, 0.456, 0.406]) and meta["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert meta["preprocessing"]["image_size"] == 32 and meta["preprocessing"]["resize_size"] == 36
    assert meta["resize_size"] == 36  # the weights' resize-then-centre-crop, for predict/serve/export too
    from cnnlab.data.loaders import fit_to_input
    from cnnlab.serve.predictor import Predictor

    wide = np.random.default_rng(0).random((40, 60, 3), dtype=np.float32)  # a non-square photo
    expected = fit_to_input(torch.from_numpy(wide).permute(2, 0, 1), 32, 36).clamp(0, 1)
    assert torch.equal(Predictor(r.run_dir).to_input(wide), expected)
    state = model.state_dict()
    body = [k for k in published if not k.startswith("classifier.") and not k.endswith("num_batches_tracked")]
    assert body and all(torch.equal(state[k], published[k]) for k in body)  # frozen body = the published tensors
    assert state["classifier.1.weight"].shape == (10, 1280)  # a new head for the 10 digits


@pytest.mark.slow
def test_cli_offline_is_one_clear_line(tmp_path):
    """No network reached: the mirror URL points at a closed port on 127.0.0.1."""
    mirror = f"http://127.0.0.1:{_dead_port()}"
    r = subprocess.run(
        [sys.executable, "-m", "cnnlab", "train", "--model", "resnet18", "--pretrained", "imagenet"]
        + ["--weights-mirror", mirror, "--out", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, W.CACHE_ENV: str(tmp_path / "cache")},
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr
    err = r.stderr.strip().splitlines()
    assert err[-1].startswith("cnnlab: error: cannot download pretrained weights from " + mirror)
    assert f"{tmp_path / 'cache' / 'weights'}/" in err[-1] and "resnet18-f37072fd.pth" in err[-1]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no run folder begun


def test_config_records_the_named_weights():
    from cnnlab.api import make_config  # imported here: `cnnlab.api` is no attribute until something imports it

    cfg = make_config(None, None, model="resnet50", pretrained="imagenet", weights="IMAGENET1K_V1")
    assert (cfg.model.pretrained, cfg.model.weights) == ("imagenet", "IMAGENET1K_V1")
    assert json.loads(json.dumps(cfg.to_dict()))["model"]["weights_mirror"] is None


# --- docs/own-images.md: its pretrained section shows valid commands and the real offline message ------------
DOC = Path(__file__).resolve().parents[2] / "docs" / "own-images.md"


def _doc_section() -> str:
    return DOC.read_text().split("## ImageNet weights (`--pretrained imagenet`)")[1].split("\n## ")[0]


def test_own_images_train_commands_are_valid():
    import shlex

    from cnnlab.api import make_config
    from cnnlab.cli.main import build_parser
    from cnnlab.cli.train import overrides_from_args

    lines = DOC.read_text().splitlines()
    commands = [line.split("$ cnnlab ", 1)[1] for line in lines if "$ cnnlab train" in line]
    assert len(commands) >= 5
    for command in commands:
        args = build_parser().parse_args(shlex.split(command))
        cfg = make_config(None, overrides_from_args(args))  # every key and value type is valid
        assert cfg.model.pretrained  # the guide leads with fine-tuning
        if cfg.model.pretrained == "imagenet" and not cfg.model.name.startswith("timm:"):
            W.torchvision_weights(cfg.model.name, cfg.model.weights)  # the named set exists


def test_own_images_names_every_model_with_published_weights():
    import re

    section = _doc_section()
    bullet = section.split("**Which models.**")[1].split("\n- ")[0]
    families = {re.sub(r"\d.*$", "", n) for n in W.torchvision_backed()}  # resnet, vgg, wide_resnet, ...
    assert families and all(f"`{f}" in bullet for f in families), families


def test_own_images_offline_message_is_the_real_one(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    shown = next(line.strip() for line in _doc_section().splitlines() if "cnnlab: error: " in line)

    def offline(*args, **kwargs):
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(CnnlabError) as err:
        W.resolve_pretrained("resnet18", "imagenet", cache=tmp_path / "weights", progress=False)
    expected = shown.replace("/home/me/.cache/cnnlab/weights", str(tmp_path / "weights"))
    assert "cnnlab: error: " + str(err.value) == expected
    assert _leftovers(tmp_path / "weights") == []
