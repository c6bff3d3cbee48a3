"""cnnlab.readers: every YAML/JSON/CSV file cnnlab reads is bounded in size, nesting and alias expansion,
and every failure is one CnnlabError that names the file."""

from __future__ import annotations

import os
import time

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.readers import load_json, load_yaml, read_csv, read_json, read_yaml

# Ten levels of ten aliases: 10**9 values once expanded, 1 KB on disk (the 11.9 GB config).
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcdefghi", "bcdefghij")
)


def test_alias_expansion_is_refused_before_anything_is_built():
    assert len(BOMB) < 1100
    start = time.perf_counter()
    with pytest.raises(CnnlabError, match=r"config file x\.yaml expands to more than 1,000,000 values"):
        load_yaml(BOMB, "config file x.yaml")
    assert time.perf_counter() - start < 2
    # a few shared aliases stay fine: that is what anchors are for
    shared = load_yaml("base: &b {lr: 0.1}\nrun: *b\nother: *b\n")
    assert shared == {"base": {"lr": 0.1}, "run": {"lr": 0.1}, "other": {"lr": 0.1}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 5000 + "]" * 5000, "nested more than 32 levels"),
        ("a: &a [*a]\n", "recursive YAML alias"),
        ("a: &a {b: *a}\n", "recursive YAML alias"),
        ("train: [unclosed", "is not valid YAML"),
        ("a: !!python/object:os.system echo\n", "is not valid YAML"),  # plain data only
        ("? [a, b]\n: 1\n", "is not valid YAML"),  # an unhashable key
    ],
)
def test_bad_yaml_is_one_error_naming_the_source(text, message):
    with pytest.raises(CnnlabError, match=message) as info:
        load_yaml(text, "config file c.yaml")
    assert "c.yaml" in str(info.value)


def test_yaml_file_limits(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * (2 << 20))
    with pytest.raises(CnnlabError, match=r"big\.yaml is larger than"):
        read_yaml(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(CnnlabError, match=r"latin\.yaml is not UTF-8"):
        read_yaml(latin)
    with pytest.raises(CnnlabError, match=r"missing\.yaml does not exist"):
        read_yaml(tmp_path / "missing.yaml")
    with pytest.raises(CnnlabError, match="is not a regular file"):
        read_yaml(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_is_refused_instead_of_blocking(tmp_path):
    fifo = tmp_path / "model.json"
    os.mkfifo(fifo)
    with pytest.raises(CnnlabError, match="is not a regular file"):
        read_json(fifo)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "is not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "nested"),
        ('{"a": ' * 40 + "1" + "}" * 40, "nested more than 32 levels"),
        ("[1, 2]", r"should hold an object"),
        ("null", r"should hold an object"),
        (b"\xff\xfe{}", "is not valid JSON"),
    ],
)
def test_bad_json_is_one_error_naming_the_file(text, message):
    with pytest.raises(CnnlabError, match=message) as info:
        load_json(text, "metrics.json", expect=dict)
    assert "metrics.json" in str(info.value)


def test_json_file_size_cap(tmp_path):
    path = tmp_path / "model.json"
    path.write_text('{"a": "' + "x" * 2000 + '"}')
    assert read_json(path)["a"] == "x" * 2000
    with pytest.raises(CnnlabError, match=r"model\.json is larger than 1,000 bytes"):
        read_json(path, max_bytes=1000)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("split,label\ntrain,1\n", "has no column source"),
        ("split,source,label\ntrain,1,2,3\n", "line 2 has more cells than the header"),
        ('split,source,label\ntrain,"' + "x" * 70_000 + '",1\n', "is not valid CSV"),
        ('split,source,label\ntrain,"unclosed\n', "is not valid CSV"),
    ],
)
def test_bad_csv_is_one_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "split.csv"
    path.write_text(text)
    with pytest.raises(CnnlabError, match=message) as info:
        read_csv(path, columns=("split", "source", "label"))
    assert "split.csv" in str(info.value)


def test_good_csv_rows(tmp_path):
    path = tmp_path / "split.csv"
    path.write_text("split,source,label\ntrain,0,3\ntest,a/b.png,1\n")
    assert read_csv(path, columns=("split",)) == [
        {"split": "train", "source": "0", "label": "3"},
        {"split": "test", "source": "a/b.png", "label": "1"},
    ]
