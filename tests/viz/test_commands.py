"""The interpret, visualize and report subcommands, run through cnnlab's real ``main`` (only these
three registered, so the test does not depend on other subcommands)."""

import csv
import json
import shutil

import pytest

from cnnlab.cli import main as cli

MINE = ["interpret", "visualize", "report"]


@pytest.fixture
def run_cli(monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMANDS", MINE)

    def run(*argv):
        code = cli.main([str(a) for a in argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_commands_are_registered():
    assert all(name in cli.COMMANDS for name in MINE)


def test_interpret_prints_pairs_and_writes_csv_and_gallery(run_cli, digits_run, tmp_path):
    digits_run = shutil.copytree(digits_run, tmp_path / "run")  # the shared run keeps its 24-image gallery
    code, out, _ = run_cli("interpret", digits_run, "--top", 6)
    assert code == 0 and "most confused pairs" in out and "6 highest-loss images" in out
    with open(digits_run / "misclassified.csv", newline="") as f:
        wrong = list(csv.DictReader(f))
    assert f"{len(wrong)} wrong" in out and wrong[0]["id"] in out  # the worst one is listed first
    gallery = json.loads((digits_run / "plots" / "worst.json").read_text())
    assert gallery["panels"] == 6 and gallery["rows"][0]["id"] == wrong[0]["id"]
    assert run_cli("interpret", digits_run, "--top", 0)[0] == 1


@pytest.mark.parametrize(
    "kind, files, panels",
    [
        ("filters", ["filters"], 32),
        ("feature-maps", ["feature_maps_5"], 1 + 8 + 8),
        ("gradcam", ["gradcam_5"], 2),
        ("saliency", ["saliency_5"], 2),
        ("predictions", ["predictions"], 32),
        ("landscape", ["landscape_1d", "landscape_2d"], None),
    ],
)
def test_visualize_each_kind(run_cli, digits_run, tmp_path, kind, files, panels):
    code, out, err = run_cli(
        "visualize", digits_run, kind, "--index", 5, "--out", tmp_path, "--steps", 5, "--samples", 100
    )
    assert code == 0, err
    for name in files:
        assert (tmp_path / f"{name}.png").stat().st_size > 5000 and f"{name}.png" in out
        data = json.loads((tmp_path / f"{name}.json").read_text())
        if panels is not None:
            assert data["panels"] == panels
    if kind == "gradcam":
        assert data["index"] == 5 and data["explained"] == data["pred"] and len(data["map"]) == 8
    if kind == "landscape":
        assert len(data["alphas"]) == 3 and len(data["loss"]) == 3  # 2-D uses about half the steps


def test_visualize_and_report_errors_are_one_line(run_cli, digits_run, tmp_path):
    code, _, err = run_cli("visualize", digits_run, "saliency", "--index", 99999)
    assert code == 1 and err.startswith("cnnlab: error: --index 99999 is outside") and "Traceback" not in err
    code, _, err = run_cli("report", tmp_path / "nope")
    assert code == 1 and "does not exist" in err
    with pytest.raises(SystemExit) as exc:  # argparse: not a KIND
        run_cli("visualize", digits_run, "gradcams")
    assert exc.value.code == 2


def test_report_command_writes_html(run_cli, digits_run, tmp_path):
    code, out, _ = run_cli("report", digits_run, "--output", tmp_path / "x.html")
    assert code == 0 and str(tmp_path / "x.html") in out
    assert (tmp_path / "x.html").read_text().startswith("<!DOCTYPE html>")


def test_report_open_hands_the_file_to_the_browser(run_cli, digits_run, tmp_path, monkeypatch):
    import webbrowser

    opened = []
    monkeypatch.setattr(webbrowser, "open", opened.append)
    code, _, _ = run_cli("report", digits_run, "--output", tmp_path / "y.html", "--open")
    assert code == 0 and opened == [(tmp_path / "y.html").resolve().as_uri()]


def test_interpret_from_python_matches_the_command(digits_run, tmp_path):
    from cnnlab.evaluation import interpret_run

    run = shutil.copytree(digits_run, tmp_path / "run")
    res = interpret_run(run, top=3)
    metrics = json.loads((run / "metrics.json").read_text())
    assert res["num_wrong"] == round((1 - metrics["accuracy"]) * metrics["num_samples"])
    assert len(res["worst"]) == 3 and res["misclassified_csv"] == run / "misclassified.csv"
    assert res["confused"][0]["count"] >= res["confused"][-1]["count"]
    with pytest.raises(Exception, match="at least 1"):
        interpret_run(run, top=0)
