"""Explainer latency in a real browser: upload -> all layers drawn, and click on a unit -> arithmetic shown.

A real ``cnnlab explain`` runs in its own process on 127.0.0.1 (``--threads`` torch threads); headless
Chromium (Debian's, driven by playwright) loads the page, uploads images and clicks units. The page
itself times each action with ``performance.now()`` (``window.explainTimes``): an upload from the
request to the last activation map drawn (forward pass with hooks, JSON, decoding, one canvas per
channel); a click from the event to the arithmetic in the DOM (one ``GET api/unit``, a lookup in the
kept analysis, the unit recomputed in float64). Clicks cycle over every layer, at random units.
The machine may be shared: the load average at start and end is printed with the figures.

Run:  python benchmarks/bench_explain.py [MODEL] [--arch seed_cnn --input 3x32x32] [--uploads 30]
      [--clicks 200] [--threads 1] [--screenshots docs/img]
Without MODEL, a seeded random-weight model of --arch is saved to a temporary folder (latency does not
depend on the weights' values).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from _server import start_cnnlab  # noqa: E402 - benchmarks/ is on sys.path when run as a script
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def random_model(arch: str, shape: tuple[int, int, int], folder: Path) -> Path:
    import torch

    from cnnlab.models import create_model
    from cnnlab.runs.model_file import save_model_file

    torch.manual_seed(0)
    c, s, _ = shape
    model = create_model(arch, num_classes=10, in_channels=c, input_size=s).eval()
    meta = {"architecture": arch, "kwargs": {}, "classes": [f"class_{i}" for i in range(10)]}
    meta |= {"input_shape": list(shape), "mean": [0.5] * c, "std": [0.25] * c, "dataset": "none"}
    return save_model_file(folder / "model", model, meta)


def start_server(model: Path, port: int, threads: int) -> subprocess.Popen:
    return start_cnnlab(["explain", str(model), "--port", str(port), "--threads", str(threads)], "/api/model", threads)


def images(n: int, folder: Path) -> list[Path]:
    """n photo-like 96x96 RGB PNGs (smooth random blobs), so the preprocessing resizes them."""
    rng = np.random.default_rng(0)
    out = []
    yy, xx = np.mgrid[:96, :96]
    for i in range(n):
        arr = np.zeros((96, 96, 3))
        for _ in range(4):
            cy, cx, r = rng.uniform(10, 86), rng.uniform(10, 86), rng.uniform(6, 20)
            arr += rng.uniform(0.2, 1, 3) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
        buf = io.BytesIO()
        Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8)).save(buf, "PNG")
        (folder / f"img{i}.png").write_bytes(buf.getvalue())
        out.append(folder / f"img{i}.png")
    return out


def click_units(page, n: int, rng: np.random.Generator) -> None:
    """n clicks at random units, cycling over the layers (input included)."""
    layers = page.eval_on_selector_all("#network .col", "cols => cols.map(c => +c.dataset.layer)")
    for k in range(n):
        layer = layers[k % len(layers)]
        canvases = page.query_selector_all(f"canvas[data-layer='{layer}']")
        cv = canvases[int(rng.integers(len(canvases)))]
        cv.scroll_into_view_if_needed()
        w, h, scale = cv.evaluate("c => [c.width, c.height, +c.dataset.scale]")
        before = page.evaluate("window.explainTimes.length")
        cv.click(position={"x": (rng.integers(w) + 0.5) * scale, "y": (rng.integers(h) + 0.5) * scale})
        page.wait_for_function(f"window.explainTimes.length > {before} || document.getElementById('error').textContent")


def measure(url: str, files: list[Path], clicks: int, shots: Path | None) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("CNNLAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url)
        page.wait_for_function("document.body.dataset.analysis !== undefined")  # the page analyses an image itself
        own = page.evaluate("window.explainTimes.length")  # that analysis is not one of ours
        for f in [files[0], *files]:  # the first upload warms up the page and the server
            before = page.evaluate("window.explainTimes.length")
            page.set_input_files("#file", str(f))
            page.wait_for_function(
                f"window.explainTimes.length > {before} || document.getElementById('error').textContent"
            )
            # each analysis also asks for its Grad-CAM: let it finish, so it does not queue before the next request
            page.wait_for_function(
                "document.getElementById('cam').dataset.analysis === document.body.dataset.analysis"
                " || document.getElementById('error').textContent"
            )
        click_units(page, clicks, np.random.default_rng(0))
        times = page.evaluate("window.explainTimes")[own:]  # before the screenshots' own clicks
        if shots is not None:
            screenshots(page, shots)
        errors = page.text_content("#error")
        browser.close()
    if errors:
        raise SystemExit(f"the page showed an error: {errors}")
    analyse = [t for t in times if t["kind"] == "analyse"][1:]  # drop the warm-up
    units = [t for t in times if t["kind"] == "unit"]
    return {
        "analyse": [t["ms"] for t in analyse],
        "analyse_fetch": [t["fetch_ms"] for t in analyse],
        "unit": [t["ms"] for t in units],
        "unit_fetch": [t["fetch_ms"] for t in units],
    }


BRIGHTEST = """(index) => {
  const layer = S.layers[index], d = decode(layer.maps), [, h, w] = layer.shape;
  let best = 0;
  for (let i = 1; i < d.length; i++) if (d[i] > d[best]) best = i;
  return [Math.floor(best / (h * w)), Math.floor((best % (h * w)) / w), best % w];
}"""


def screenshots(page, folder: Path) -> None:
    """The figures of docs/explain.md, one section each, as 8-bit palette PNGs (small files)."""
    folder.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1366, "height": 768})  # a laptop
    page.add_style_tag(content="header { position: static !important; }")  # not stitched over tall sections
    sample = page.query_selector("#samples img[data-index='0']")  # a test image of the run, when it has them
    if sample is not None:
        before = page.evaluate("window.explainTimes.length")
        sample.click()
        page.wait_for_function(f"window.explainTimes.length > {before}")
    page.wait_for_function("document.getElementById('cam').dataset.method === 'gradcam'")
    shot(page, "#input", folder / "explain_input.png")
    page.click("#overview .ov[data-layer='1']")  # the first conv, its column at the left (after the timed clicks)
    page.evaluate("document.getElementById('network').scrollLeft = 0")
    shot(page, "#net", folder / "explain_network.png", height=760)
    for layer, kind, name in [(1, "conv", "explain_conv.png"), (4, "maxpool", "explain_pool.png")]:
        c, y, x = page.evaluate(BRIGHTEST, layer)  # the layer's largest unit: an example with something in it
        page.click(f"#overview .ov[data-layer='{layer}']")
        cv = page.query_selector(f"#layerview canvas[data-layer='{layer}'][data-channel='{c}']")
        cv.scroll_into_view_if_needed()
        scale = float(cv.get_attribute("data-scale"))
        cv.click(position={"x": (x + 0.5) * scale, "y": (y + 0.5) * scale})
        page.wait_for_selector(f"#arith[data-kind='{kind}']")
        page.wait_for_function("document.getElementById('unitslide').dataset.done === '1'")
        shot(page, "#detail", folder / name, height=700)
    shot(page, "#layer", folder / "explain_layer.png", height=620)
    shot(page, "#output", folder / "explain_output.png")
    shot(page, "#playground", folder / "explain_playground.png")


def shot(page, selector: str, path: Path, height: int | None = None) -> None:
    """A screenshot of one section (its top ``height`` pixels), saved with a 256-colour palette."""
    box = page.locator(selector)
    box.scroll_into_view_if_needed()
    raw = box.screenshot()
    img = Image.open(io.BytesIO(raw)).convert("RGB")
    if height is not None and img.height > height:
        img = img.crop((0, 0, img.width, height))
    img.quantize(256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help="run or model folder (default: a random-weight --arch)")
    ap.add_argument("--arch", default="seed_cnn")
    ap.add_argument("--input", default="3x32x32", help="CxSxS of the random-weight model")
    ap.add_argument("--uploads", type=int, default=30)
    ap.add_argument("--clicks", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    ap.add_argument("--screenshots", type=Path, help="write the docs' screenshots into this folder")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_explain_"))
    shape = tuple(int(v) for v in args.input.lower().split("x"))
    model = Path(args.model) if args.model else random_model(args.arch, shape, tmp)
    port = free_port()
    load0 = os.getloadavg()[0]
    proc = start_server(model, port, args.threads)
    try:
        res = measure(f"http://127.0.0.1:{port}/", images(args.uploads, tmp), args.clicks, args.screenshots)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# {when}; {os.cpu_count()} CPUs, load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    print(
        f"model: {args.model or f'{args.arch} {args.input} (random weights)'}; server: {args.threads} torch thread(s)"
    )
    print("| action | n | p50 ms | p95 ms | max ms |")
    print("|---|---|---|---|---|")
    rows = [
        ("analyse", "upload -> all layers drawn"),
        ("analyse_fetch", "  of which the request (server + transfer)"),
        ("unit", "click -> arithmetic shown"),
        ("unit_fetch", "  of which the request (server + transfer)"),
    ]
    for key, label in rows:
        v = res[key]
        print(f"| {label} | {len(v)} | {pct(v, 50):.1f} | {pct(v, 95):.1f} | {max(v):.1f} |")


if __name__ == "__main__":
    main()
