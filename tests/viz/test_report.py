import base64
import csv
import io
import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm

from chromium_helpers import browser_page
from cnnlab.viz.report import SECTIONS, write_report, write_report_safely

IMAGES = 6  # curves, two confusion matrices, worst predictions, reliability, ROC/PR


def _html(run):
    return (run / "report.html").read_text(encoding="utf-8")


def test_training_writes_a_self_contained_report(digits_run):
    text = _html(digits_run)  # written by cnnlab.train itself (output.plots on)
    for sid, title in SECTIONS:
        assert f"<section id='{sid}'><h2>{title}</h2>" in text
    srcs = re.findall(r'src="([^"]*)"', text)
    assert len(srcs) == IMAGES and all(s.startswith("data:image/png;base64,") for s in srcs)
    for s in srcs:
        img = Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1])))
        assert img.size[0] > 300 and img.size[1] > 150
    assert not re.search(r"(href|src)=[\"'](https?:|//)|<link|@import|url\(", text)  # nothing to fetch


def test_report_tables_agree_with_the_metrics(digits_run, digits_preds):
    text = _html(digits_run)
    metrics = json.loads((digits_run / "metrics.json").read_text())
    table = re.search(r"<table class='sortable' id=\"per-class\">(.*?)</table>", text).group(1)
    body = re.search(r"<tbody>(.*?)</tbody>", table).group(1)
    assert body.count("<tr>") == len(metrics["classes"]) == 10
    assert f"{metrics['accuracy']:.4f}" in text and f"{metrics['macro']['f1']:.4f}" in text
    # the bridge to the run reproduces the test metrics saved by training
    assert float((digits_preds.logits.argmax(1) == digits_preds.targets).mean()) == pytest.approx(metrics["accuracy"])
    with open(digits_run / "misclassified.csv", newline="") as f:
        wrong = list(csv.DictReader(f))
    cm = np.array(metrics["confusion_matrix"])
    assert len(wrong) == cm.sum() - np.trace(cm)
    roc = json.loads((digits_run / "plots" / "roc_pr.json").read_text())
    auc = skm.roc_auc_score(digits_preds.targets, digits_preds.probs, multi_class="ovr", average="macro")
    assert roc["macro_auc"] == pytest.approx(auc)
    worst = json.loads((digits_run / "plots" / "worst.json").read_text())
    assert worst["panels"] == 24 and worst["rows"][0]["id"] in text


def test_report_to_another_path_and_failure_only_warns(tmp_path, digits_run):
    run = shutil.copytree(digits_run, tmp_path / "run")  # leave the shared run as training wrote it
    out = write_report(run, out=tmp_path / "r.html", top=5)
    assert out.is_file() and (run / "report.html").read_text() != out.read_text()
    assert json.loads((run / "plots" / "worst.json").read_text())["panels"] == 5
    logged = []
    assert write_report_safely(tmp_path / "missing-run", log=logged.append) is None
    assert logged and logged[0].startswith("warning: the HTML report could not be written")


@pytest.mark.browser
def test_report_renders_in_headless_chromium(digits_run, tmp_path):
    with browser_page(viewport={"width": 1280, "height": 900}) as page:
        console, requests = [], []
        page.on("console", lambda m: console.append((m.type, m.text)))
        page.on("pageerror", lambda e: console.append(("error", str(e))))
        page.on("request", lambda r: requests.append(r.url))
        page.goto((digits_run / "report.html").resolve().as_uri())
        page.wait_for_load_state("load")
        headings = page.eval_on_selector_all("section > h2", "hs => hs.map(h => h.textContent)")
        assert headings == [title for _, title in SECTIONS]
        for sid, _ in SECTIONS:
            assert page.is_visible(f"#{sid} > h2")
        widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == IMAGES and min(widths) > 0
        assert page.locator("#per-class tbody tr").count() == 10
        # the table sorts when a heading is clicked (F1, descending on the second click)
        page.click("#per-class thead th:nth-child(4)")
        page.click("#per-class thead th:nth-child(4)")
        f1 = [
            float(t)
            for t in page.eval_on_selector_all("#per-class tbody td:nth-child(4)", "c => c.map(x => x.textContent)")
        ]
        assert f1 == sorted(f1, reverse=True)
        page.click("#config > h2")  # sections fold
        assert not page.is_visible("#config pre")
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
    assert [c for c in console if c[0] in ("error", "warning")] == []
    assert all(u.startswith(("file:", "data:")) for u in requests)
    width, height = Image.open(shot).size
    assert width == 1280 and height > 3000  # every section laid out, one under the other
    if os.environ.get("CNNLAB_REPORT_SCREENSHOT"):  # regenerating docs: keep a copy
        shutil.copy(shot, os.environ["CNNLAB_REPORT_SCREENSHOT"])
