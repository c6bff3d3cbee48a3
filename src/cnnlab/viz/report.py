"""The HTML run report: one self-contained file, ``RUN/report.html``, that opens in any browser
without a network (images inlined as base64 PNG, CSS and a few lines of vanilla JS inline).

Sections: overview, config, data summary (classes, split counts, normalisation), training curves,
metrics (per-class precision/recall/F1/support with AUC and AP, macro and weighted averages, top-k),
confusion matrix, most-confused pairs, worst predictions (highest loss, with id, true/predicted
class and confidence), calibration (reliability diagram, ECE), ROC and precision-recall curves,
model summary and environment. ``cnnlab train`` writes it at the end of every run and
``cnnlab report RUN`` rebuilds it; the plots it shows are also saved in ``RUN/plots/`` with a JSON
of their numbers beside each PNG.
"""

from __future__ import annotations

import base64
import html
import json
import string
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.evaluation.curves import calibration, curve_metrics, pr_ovr, roc_ovr
from cnnlab.evaluation.interpret import (
    RunPredictions,
    most_confused,
    run_predictions,
    top_losses,
    write_misclassified_csv,
)
from cnnlab.evaluation.metrics import classification_metrics, topk_accuracies
from cnnlab.files import atomic
from cnnlab.runs import read_history_csv, read_json
from cnnlab.viz.plots import plot_confusion, plot_history, plot_image_grid, plot_reliability, plot_roc_pr

SECTIONS = [
    ("overview", "Overview"),
    ("config", "Config"),
    ("data", "Data"),
    ("curves", "Training curves"),
    ("metrics", "Metrics"),
    ("confusion", "Confusion matrix"),
    ("confused", "Most confused pairs"),
    ("worst", "Worst predictions"),
    ("calibration", "Calibration"),
    ("roc", "ROC and precision-recall"),
    ("model", "Model summary"),
    ("environment", "Environment"),
]


def write_plots(rp: RunPredictions, plots: Path, top: int = 24) -> dict[str, Any]:
    """Compute every figure of the report from a run's predictions, save them under ``plots``
    (PNG + JSON) and return the numbers the HTML needs."""
    plots.mkdir(parents=True, exist_ok=True)
    classes, probs, y = rp.classes, rp.probs, rp.targets
    m = classification_metrics(y, rp.logits.argmax(1), rp.logits, classes)
    roc, pr, cal = roc_ovr(y, probs), pr_ovr(y, probs), calibration(y, probs)
    rows = rp.rows()
    worst = top_losses(rows, top)
    cm = np.array(m["confusion_matrix"])
    normalised = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    if _stale(plots / "confusion.png", "matrix", normalised):  # training has usually drawn it already
        plot_confusion(cm, classes, plots / "confusion.png", normalize=True)
    if _stale(plots / "confusion_counts.png", "matrix", cm):
        plot_confusion(cm, classes, plots / "confusion_counts.png", normalize=False)
    plot_roc_pr(roc, pr, classes, plots / "roc_pr.png")
    plot_reliability(cal, plots / "reliability.png")
    plot_image_grid(
        rp.images([r["index"] for r in worst]), worst, plots / "worst.png", f"{len(worst)} highest-loss images"
    )
    history = read_history_csv(rp.run_dir / "history.csv") if (rp.run_dir / "history.csv").is_file() else []
    if history and _stale(plots / "curves.png", "epochs", [int(r["epoch"]) for r in history]):
        plot_history(history, plots / "curves.png")
    return {
        "metrics": m,
        "curves": curve_metrics(y, probs),
        "topk": topk_accuracies(rp.logits, y, (1, 3, 5)),
        "confused": most_confused(cm, classes, top=10),
        "worst": worst,
        "rows": rows,
    }


def _stale(png: Path, key: str, value: Any) -> bool:
    """True unless ``png`` and its JSON exist and the JSON's ``key`` holds ``value`` (plot is current)."""
    try:
        saved = read_json(png.with_suffix(".json"))[key]
        return not (png.is_file() and np.shape(saved) == np.shape(value) and np.allclose(saved, value))
    except (CnnlabError, ValueError, KeyError, TypeError):
        return True


def write_report(
    run: str | Path, out: str | Path | None = None, split: str = "test", device: str = "cpu", top: int = 24
) -> Path:
    """Evaluate a run folder on its own ``split`` and write the self-contained HTML report.

    Also writes ``RUN/misclassified.csv`` and the report's plots under ``RUN/plots/``.
    Returns the path of the HTML file (``RUN/report.html`` unless ``out`` is given). For a built-in
    run (``demo:mnist``, read-only in the package) RUN here is ``runs/demo-NAME`` instead.
    """
    rp = run_predictions(run, split=split, device=device)
    out_dir = rp.out_dir
    res = write_plots(rp, out_dir / "plots", top=top)
    write_misclassified_csv(out_dir / "misclassified.csv", res["rows"])
    html_text = render(rp.run_dir, rp, res, plots=out_dir / "plots")
    path = Path(out) if out is not None else out_dir / "report.html"
    atomic.write_text(path, html_text)
    return path


# ---------------------------------------------------------------------------------------- rendering


def _e(v: Any) -> str:
    return html.escape(str(v))


def _img(path: Path, alt: str) -> str:
    if not path.is_file():
        return f"<p class='missing'>{_e(alt)}: not available for this run.</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _table(head: list[str], rows: list[list[Any]], foot: list[list[Any]] | None = None, tid: str = "") -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    tf = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in foot or [])
    ident = f' id="{tid}"' if tid else ""
    return (
        f"<table class='sortable'{ident}><thead><tr>{th}</tr></thead><tbody>{body}</tbody><tfoot>{tf}</tfoot></table>"
    )


def _f(v: Any, digits: int = 4) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def _read(path: Path, default: Any = None) -> Any:
    if not path.is_file():
        return default
    return read_json(path) if path.suffix == ".json" else path.read_text(encoding="utf-8")


def _overview(run_dir: Path, rp: RunPredictions, res: dict) -> str:
    m, c = res["metrics"], res["curves"]
    cards = [
        ("accuracy", _f(m["accuracy"])),
        ("balanced accuracy", _f(m["balanced_accuracy"])),
        ("top-5 accuracy", _f(m.get("top5_accuracy"))),
        ("macro F1", _f(m["macro"]["f1"])),
        ("loss", _f(m.get("loss"))),
        ("macro ROC AUC", _f(c["macro_auc"])),
        ("ECE", _f(c["ece"])),
        ("samples", f"{m['num_samples']:,}"),
    ]
    boxes = "".join(
        f"<div class='card'><div class='v'>{_e(v)}</div><div class='k'>{_e(k)}</div></div>" for k, v in cards
    )
    warnings = (_read(run_dir / "data.json", {}) or {}).get("warnings") or []  # e.g. a leak trained with anyway
    return "".join(f"<p class='warning'><b>Warning:</b> {_e(w)}</p>" for w in warnings) + (
        f"<p>Model <b>{_e(rp.meta['architecture'])}</b> on <b>{_e(rp.meta.get('dataset'))}</b>, "
        f"{_e(rp.split)} split, {len(rp.classes)} classes. Best epoch {_e(rp.meta.get('best_epoch'))} of "
        f"{_e(rp.meta.get('epochs_trained'))}.</p><div class='cards'>{boxes}</div>"
    )


def _data(run_dir: Path, rp: RunPredictions) -> str:
    d = _read(run_dir / "data.json", {}) or {}
    counts = d.get("split_counts") or {}
    splits = [s for s in ("train", "val", "test") if s in counts]
    rows = [[name] + [counts[s][i] for s in splits] for i, name in enumerate(rp.classes)]
    foot = [["total"] + [sum(counts[s]) for s in splits]]
    norm = ", ".join(f"{a:.4f} ± {b:.4f}" for a, b in zip(rp.meta["mean"], rp.meta["std"]))
    note = f"<p class='note'>{_e(d['note'])}</p>" if d.get("note") else ""
    if d.get("balance"):
        note += f"<p>Class imbalance: {_e(d['balance']['applied'])}.</p>"
    if d.get("skipped"):
        left = "; ".join(f"{p} ({why})" for p, why in d["skipped"])
        note += f"<p>{len(d['skipped'])} file(s) were left out: {_e(left)}.</p>"
    return (
        f"<p>Input {'×'.join(map(str, rp.meta['input_shape']))} (C×H×W). Normalisation per channel "
        f"(mean ± std, from the training split only): {_e(norm)}.</p>{note}"
        + _table(["class", *splits], rows, foot, tid="data-table")
    )


def _metrics(res: dict) -> str:
    m, c = res["metrics"], res["curves"]
    rows = [
        [r["class"], _f(r["precision"]), _f(r["recall"]), _f(r["f1"]), r["support"], _f(c["auc"][i]), _f(c["ap"][i])]
        for i, r in enumerate(m["per_class"])
    ]
    foot = [
        [f"{avg} avg", _f(m[avg]["precision"]), _f(m[avg]["recall"]), _f(m[avg]["f1"]), m["num_samples"], "", ""]
        for avg in ("macro", "weighted")
    ]
    foot[0][5:] = [_f(c["macro_auc"]), _f(c["macro_ap"])]
    topk = ", ".join(f"top-{k[3:]} {_f(v)}" for k, v in res["topk"].items())
    head = ["class", "precision", "recall", "F1", "support", "ROC AUC", "AP"]
    return (
        "<p>Click a column heading to sort.</p>"
        + _table(head, rows, foot, tid="per-class")
        + f"<p>Accuracy {_f(m['accuracy'])}, balanced accuracy {_f(m['balanced_accuracy'])}; {_e(topk)}; "
        f"Brier score {_f(c['brier'])}.</p>"
    )


def _confused(res: dict) -> str:
    if not res["confused"]:
        return "<p>No mistakes: every test image was classified correctly.</p>"
    rows = [[r["true"], r["pred"], r["count"], f"{100 * r['share']:.1f} %"] for r in res["confused"]]
    return _table(["true class", "predicted as", "count", "share of true class"], rows, tid="confused-table")


def _worst(plots: Path, res: dict) -> str:
    rows = [
        [r["id"], r["true"], r["pred"], _f(r["confidence"], 3), _f(r["p_true"], 3), _f(r["loss"], 3)]
        for r in res["worst"]
    ]
    return (
        _img(plots / "worst.png", "highest-loss test images")
        + "<p>Green frame: right, red: wrong. All wrong predictions are listed in <code>misclassified.csv</code>.</p>"
        + _table(["id", "true", "predicted", "confidence", "p(true)", "loss"], rows, tid="worst-table")
    )


def _model(run_dir: Path, rp: RunPredictions) -> str:
    from cnnlab.models.summary import summary

    if rp.run.engine == "numpy":
        net = rp.run.load_model().net
        return (
            f"<p>{_e(rp.meta['architecture'])}: {net.num_parameters():,} parameters, trained by cnnlab's NumPy "
            "engine (<code>cnnlab scratch train</code>).</p>"
        )
    try:
        s = summary(rp.model, tuple(rp.meta["input_shape"]))
    except Exception as exc:  # a summary is nice to have; never lose the report over it
        return f"<p class='missing'>model summary failed: {_e(exc)}</p>"
    return (
        f"<p>{_e(rp.meta['architecture'])}: {s.total_params:,} parameters ({s.trainable_params:,} trainable), "
        f"{s.total_macs:,} multiply-accumulates per image.</p><pre>{_e(s.table())}</pre>"
    )


def render(run_dir: Path, rp: RunPredictions, res: dict, plots: Path | None = None) -> str:
    """The report's HTML text from a run folder, its predictions and :func:`write_plots`' result
    (whose pictures are in ``plots``, by default ``run_dir/plots``)."""
    plots = run_dir / "plots" if plots is None else plots
    env = _read(run_dir / "env.json", {}) or {}
    body = {
        "overview": _overview(run_dir, rp, res),
        "config": f"<details open><summary>config.yaml</summary><pre>{_e(_read(run_dir / 'config.yaml', ''))}</pre>"
        "</details>",
        "data": _data(run_dir, rp),
        "curves": _img(plots / "curves.png", "training curves"),
        "metrics": _metrics(res),
        "confusion": "<div class='pair'>"
        + _img(plots / "confusion.png", "confusion matrix (row-normalised)")
        + _img(plots / "confusion_counts.png", "confusion matrix (counts)")
        + "</div>",
        "confused": _confused(res),
        "worst": _worst(plots, res),
        "calibration": f"<p>Expected calibration error {_f(res['curves']['ece'])} over 15 equal-width "
        f"confidence bins (largest bin gap {_f(res['curves']['mce'])}).</p>"
        + _img(plots / "reliability.png", "reliability diagram"),
        "roc": _img(plots / "roc_pr.png", "ROC and precision-recall curves"),
        "model": _model(run_dir, rp),
        "environment": f"<pre>{_e(json.dumps(env, indent=2))}</pre>",
    }
    sections = "\n".join(
        f"<section id='{sid}'><h2>{_e(title)}</h2>\n{body[sid]}\n</section>" for sid, title in SECTIONS
    )
    nav = " ".join(f"<a href='#{sid}'>{_e(title)}</a>" for sid, title in SECTIONS)
    return string.Template(_TEMPLATE).substitute(
        title=_e(f"cnnlab report: {run_dir.name}"), run=_e(run_dir.name), nav=nav, sections=sections
    )


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d2330; background: #f5f6f8; }
header { background: #1d2b4f; color: #fff; padding: 14px 24px; }
header h1 { margin: 0; font-size: 1.35em; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #dde; padding: 8px 24px; z-index: 1;
      font-size: 0.9em; }
nav a { margin-right: 12px; color: #2952a3; text-decoration: none; }
main { max-width: 1180px; margin: 0 auto; padding: 8px 24px 40px; }
section { background: #fff; border: 1px solid #dde; border-radius: 6px; padding: 6px 18px 14px; margin: 16px 0; }
h2 { font-size: 1.15em; border-bottom: 1px solid #eee; padding-bottom: 4px; cursor: pointer; }
h2::after { content: " \\25BE"; color: #99a; font-size: 0.8em; }
section.closed > :not(h2) { display: none; }
section.closed h2::after { content: " \\25B8"; }
img { max-width: 100%; height: auto; display: block; margin: 8px 0; }
table { border-collapse: collapse; font-size: 0.88em; margin: 8px 0; }
th, td { border: 1px solid #dde; padding: 3px 8px; text-align: right; }
th { background: #eef1f7; cursor: pointer; user-select: none; }
td:first-child, th:first-child { text-align: left; }
tfoot td { font-weight: 600; background: #fafbfd; }
pre { background: #f7f7fa; border: 1px solid #eee; padding: 8px; overflow-x: auto; font-size: 0.8em; }
.pair { display: flex; gap: 12px; align-items: flex-start; }
.pair img { width: 49%; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { border: 1px solid #dde; border-radius: 6px; padding: 8px 14px; min-width: 110px; background: #fafbfd; }
.card .v { font-size: 1.3em; font-weight: 600; }
.card .k { font-size: 0.8em; color: #667; }
.missing, .note { color: #777; font-style: italic; }
.warning { background: #fff3cd; border-left: 4px solid #c90; padding: 6px 10px; }
</style>
</head>
<body>
<header><h1>$title</h1></header>
<nav>$nav</nav>
<main>
$sections
</main>
<script>
// Click a heading to fold a section; click a column heading to sort a table (numbers numerically).
document.querySelectorAll("section > h2").forEach(function (h) {
  h.addEventListener("click", function () { h.parentElement.classList.toggle("closed"); });
});
function cellValue(row, i) {
  var t = row.children[i].textContent.trim();
  var n = parseFloat(t.replace(/[^0-9.eE+-]/g, ""));
  return isNaN(n) || /[a-df-z]/i.test(t) ? t.toLowerCase() : n;
}
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, i) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var dir = th.dataset.dir === "asc" ? -1 : 1;
      th.dataset.dir = dir === 1 ? "asc" : "desc";
      rows.sort(function (a, b) {
        var x = cellValue(a, i), y = cellValue(b, i);
        return (x > y ? 1 : x < y ? -1 : 0) * dir;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
</script>
</body>
</html>
"""


def write_report_safely(run: str | Path, log=print, device: str | Any = "cpu") -> Path | None:
    """:func:`write_report` for the end of training: a failure is logged as a warning and returns
    None, so the run folder (already complete) is never lost over its report."""
    try:
        path = write_report(run, device=str(device))
    except Exception as exc:  # noqa: BLE001 - any failure here must not end the training run
        why = f"{type(exc).__name__}: {exc}"
        log(f"warning: the HTML report could not be written ({why}); retry with 'cnnlab report {run}'")
        return None
    log(f"report: {path}")
    return path
