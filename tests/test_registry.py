import pytest

from cnnlab.errors import CnnlabError
from cnnlab.registry import Registry


def test_register_create_and_list():
    reg = Registry("widget")

    @reg.register()
    def small(size=1):
        return ("small", size)

    @reg.register("big-one")
    def big():
        return "big"

    assert reg.create("small", size=3) == ("small", 3)
    assert reg.names() == ["big-one", "small"] and reg.names("b*") == ["big-one"]
    assert "small" in reg and len(reg) == 2


def test_duplicates_are_refused():
    reg = Registry("widget")
    reg.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(lambda: 2)


def test_unknown_name_suggests_the_nearest():
    reg = Registry("model")
    reg.register("seed_cnn")(lambda: 1)
    with pytest.raises(CnnlabError, match=r"unknown model 'seed_cn'.*Did you mean 'seed_cnn'"):
        reg.get("seed_cn")
