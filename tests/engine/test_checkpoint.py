import pytest
import torch

from cnnlab.engine import checkpoint
from cnnlab.engine.checkpoint import atomic_save, load_checkpoint
from cnnlab.errors import CnnlabError


def test_round_trip_with_weights_only(tmp_path):
    state = {"w": torch.randn(3, 3), "epoch": 4, "rng": {"torch": torch.get_rng_state()}, "hist": [{"a": 1.0}]}
    atomic_save(state, tmp_path / "c.pt")
    back = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(back["w"], state["w"]) and back["epoch"] == 4 and back["hist"] == [{"a": 1.0}]


def test_a_failed_save_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    atomic_save({"v": torch.ones(2)}, tmp_path / "last.pt")
    good = (tmp_path / "last.pt").read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt  # as if the process were interrupted in the middle of writing

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"v": torch.zeros(2)}, tmp_path / "last.pt")
    assert (tmp_path / "last.pt").read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


class Evil:
    """Any non-allowlisted class: weights_only loading must refuse to construct it."""


def test_refuses_pickled_objects_and_garbage(tmp_path):
    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CnnlabError, match="cannot be loaded"):
        load_checkpoint(tmp_path / "evil.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CnnlabError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CnnlabError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
