"""The explainer page in headless Chromium: upload, click units, and check the shown arithmetic against torch.

The expected numbers are computed here from the saved weights with torch's functional ops (conv2d,
batch_norm, relu, max_pool2d, softmax) on an input normalised by hand, not through cnnlab's hooks.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from explain_helpers import MEAN, STD, digit_like
from PIL import Image

from chromium_helpers import browser_page
from cnnlab.runs.model_file import load_model

pytestmark = pytest.mark.browser


def _close(shown: str, expected: float) -> bool:
    return math.isclose(float(shown), expected, rel_tol=1e-4, abs_tol=1e-5)


def _torch_reference(model_dir, image: Path) -> dict[str, torch.Tensor]:
    """Layer outputs of the first block and the softmax, from the weights, by torch's functional ops."""
    model, _ = load_model(model_dir)
    x = torch.from_numpy(np.asarray(Image.open(image).convert("L"), dtype=np.float32) / 255.0)[None, None]
    x = (x - MEAN) / STD  # (1, 1, 28, 28): the file is already 28x28, so no resize
    conv, bn = model.features[0][0], model.features[0][1]
    z = F.conv2d(x, conv.weight, conv.bias, padding=1)  # (1, 32, 28, 28)
    b = F.batch_norm(z, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    r = F.relu(b)
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)[0]
    return {"x": x, "conv": z.detach(), "relu": r.detach(), "pool": F.max_pool2d(r, 2).detach(), "probs": probs}


def _click(page, selector: str, y: int, x: int, kind: str):
    """Click unit (y, x) of the map canvas ``selector``; wait for its arithmetic and the end of the window's slide."""
    canvas = page.query_selector(selector)
    scale = float(canvas.get_attribute("data-scale"))
    canvas.scroll_into_view_if_needed()
    canvas.click(position={"x": (x + 0.5) * scale, "y": (y + 0.5) * scale})
    page.wait_for_selector(f"#arith[data-kind='{kind}'] [data-k='value']")
    return lambda key: page.text_content(f"#arith [data-k='{key}']")


def _slid_to(page) -> dict[str, int]:
    """Where the kernel-window animation of the clicked unit ended: output (i, j), window top-left (y0, x0)."""
    page.wait_for_function("document.getElementById('unitslide').dataset.done === '1'")
    return page.eval_on_selector(
        "#unitslide", "e => ({i: +e.dataset.i, j: +e.dataset.j, y0: +e.dataset.y0, x0: +e.dataset.x0})"
    )


def _open(page, url: str) -> None:
    """Load the page and wait for the image it analyses by itself (a test image, or its own picture)."""
    page.goto(url)
    page.wait_for_function("document.body.dataset.analysis !== undefined")


@pytest.mark.slow
def test_explainer_page_shows_the_arithmetic_torch_computes(explain_server, explain_model, tmp_path):
    host, port = explain_server
    image = tmp_path / "digit.png"
    digit_like(28, 3).save(image)
    ref = _torch_reference(explain_model, image)
    # reduced motion: every animation shows its last frame at once (checked with motion below)
    with browser_page(reduced_motion="reduce") as page:
        external: list[str] = []
        page.on("request", lambda req: external.append(req.url) if f":{port}/" not in req.url else None)
        _open(page, f"http://{host}:{port}/")
        # not empty on arrival: the first test image is analysed, and the strip holds every class
        assert page.text_content("#truth") == "true label: digit_0"
        labels = {f.text_content() for f in page.query_selector_all("#samples figcaption")}
        assert labels == {f"digit_{i}" for i in range(10)}
        # the header and the status count the same 25 layers (the input is not a layer)
        assert "25 layers" in page.text_content("#model") and "25 layers" in page.text_content("#status")
        # the architecture overview: the input, 25 layers and the softmax, with their output shapes
        boxes = page.query_selector_all("#overview .ov[data-layer]")
        assert len(boxes) == 26 and "32\u00d728\u00d728" in boxes[1].text_content()
        assert "conv 3\u00d73" in boxes[1].text_content() and "max 2\u00d72" in boxes[4].text_content()
        block = page.query_selector_all("#overview .grp[data-block='features.0'] .ov")  # one block, one frame
        assert [b.get_attribute("data-layer") for b in block] == ["1", "2", "3", "4", "5"]

        first = page.evaluate("document.body.dataset.analysis")
        page.set_input_files("#file", str(image))
        page.wait_for_function(f"document.body.dataset.analysis !== '{first}'")
        # every layer drawn: input + 25 hooked calls of seed_cnn; the first conv's 32 channels in the layer view
        assert len(page.query_selector_all("#network .col")) == 26
        assert page.get_attribute("#layerview", "data-layer") == "1"
        assert len(page.query_selector_all("#layerview canvas[data-layer='1']")) == 32
        assert "C_in x k x k weights" in page.text_content("#layerview .about")  # what a conv layer does
        assert "32 filters x 1 channels x 3 x 3 + 32 biases = 320" in page.text_content("#layerview .facts")

        # a conv unit: patch x kernel summed, plus bias, equals torch's conv2d
        c, y, x = 2, 10, 13
        get = _click(page, f"#network canvas[data-layer='1'][data-channel='{c}']", y, x, "conv")
        expected = float(ref["conv"][0, c, y, x])
        assert _close(get("computed"), expected) and _close(get("value"), expected)
        assert _close(get("sum"), expected - float(get("bias")))
        patch = [float(td.text_content()) for td in page.query_selector_all("#arith table.patch td")]
        assert np.allclose(patch, ref["x"][0, 0, y - 1 : y + 2, x - 1 : x + 2].flatten().numpy(), atol=1e-5)
        box = page.text_content("#rftext")
        assert f"rows {y - 1}-{y + 1}, columns {x - 1}-{x + 1}" in box  # the 3x3 receptive field
        assert page.eval_on_selector(".marker", "m => m.closest('.col').dataset.layer") == "1"  # unit outlined
        # the kernel slid over the (padded) input to the clicked unit: its window starts one pixel up-left
        assert _slid_to(page) == {"i": y, "j": x, "y0": y - 1, "x0": x - 1}
        assert "weight sharing" in page.text_content("#unitabout")

        # a ReLU unit (layer 3): the formula with the input put in for x, and the 'x' of 'max' left alone
        get = _click(page, "#network canvas[data-layer='3'][data-channel='0']", y, x, "activation")
        v = get("input")
        assert _close(get("computed"), float(ref["relu"][0, 0, y, x])) and _close(get("computed"), max(0.0, float(v)))
        assert f"ReLU({v}) = max(0, {v}) = " in page.text_content("#arith .eq")
        assert _slid_to(page) == {"i": y, "j": x, "y0": y, "x0": x}  # value by value: a 1x1 window, same place

        # a max-pool unit (layer 4 = features.0.3), chosen from the overview's layer view: channel 7 is not
        # in its column; the max of its 2x2 window, which input won, and the window slid with stride 2
        page.click("#overview .ov[data-layer='4']")
        page.wait_for_selector("#layerview[data-layer='4'] canvas[data-channel='7']")
        c, y, x = 7, 4, 9
        get = _click(page, f"#layerview canvas[data-layer='4'][data-channel='{c}']", y, x, "maxpool")
        window = ref["relu"][0, c, 2 * y : 2 * y + 2, 2 * x : 2 * x + 2]
        assert _close(get("computed"), float(ref["pool"][0, c, y, x])) and _close(get("value"), float(window.max()))
        r, q = divmod(int(window.argmax()), 2)
        assert get("winner") == f"({2 * y + r}, {2 * x + q})"
        assert _slid_to(page) == {"i": y, "j": x, "y0": 2 * y, "x0": 2 * x}
        assert "largest value of each window" in page.text_content("#layerview .about")

        # the second conv (layer 6): the receptive path grows 3 (conv) -> 4 (pool) -> 8 px (conv), and the
        # page's own walk along the layers ends on the field the server computed
        y, x = 5, 6
        _click(page, "#network canvas[data-layer='6'][data-channel='0']", y, x, "conv")
        page.wait_for_function("document.getElementById('rfpath').dataset.done === '1'")
        assert page.get_attribute("#rfpath", "data-rfs") == "3,4,8"
        y0, x0, y1, x1 = page.get_attribute("#rfpath", "data-last").split(",")
        assert f"rows {y0}-{y1}, columns {x0}-{x1}" in page.text_content("#rftext")
        assert (y0, x0) == (str(2 * y - 3), str(2 * x - 3))  # centre 2 * y + 0.5, 8 pixels wide
        assert "3 px (#1)" in page.text_content("#rfpath") and "8 px (#6)" in page.text_content("#rfpath")

        # the softmax: every probability as torch computes it, and they sum to 1
        probs = [float(page.text_content(f"#softmax tr[data-class='{k}'] [data-k='prob']")) for k in range(10)]
        assert np.allclose(probs, ref["probs"].numpy(), rtol=1e-4, atol=1e-6)
        top = page.query_selector_all("#top .r")
        assert len(top) == 5 and top[0].query_selector(".lab").text_content() == f"digit_{int(ref['probs'].argmax())}"

        # Grad-CAM of the predicted class is drawn by itself, with a note on the last conv layer's 7x7 maps
        page.wait_for_function("document.getElementById('cam').dataset.method === 'gradcam'")
        assert "features.2.0" in page.text_content("#camnote") and "7\u00d77" in page.text_content("#camnote")
        page.select_option("#camclass", "3")
        page.click("#gradcam")
        page.wait_for_function("document.getElementById('cam').dataset.target === '3'")
        assert page.text_content("#error") == "" and external == [], external

        # a test image of the run, with its true label; then a digit drawn on the canvas
        page.click("#samples img[data-index='1']")
        page.wait_for_function("document.getElementById('truth').textContent === 'true label: digit_1'")
        first = page.evaluate("document.body.dataset.analysis")
        box = page.query_selector("#draw").bounding_box()
        page.mouse.move(box["x"] + 40, box["y"] + 30)
        page.mouse.down()
        page.mouse.move(box["x"] + 70, box["y"] + 110, steps=8)
        page.mouse.up()
        page.click("#drawgo")
        page.wait_for_function(f"document.body.dataset.analysis !== '{first}'")
        assert page.text_content("#truth") == "" and page.text_content("#error") == ""
        assert "140x140" in page.text_content("#steps figure[data-step='decoded']")


def _set(page, **values: int) -> None:
    for key, v in values.items():
        page.fill(f"#pg{key}", str(v))
        page.dispatch_event(f"#pg{key}", "change")


@pytest.mark.slow
def test_convolution_playground_matches_torch(explain_server, tmp_path):
    """The playground's output size and map, computed in the browser, against torch's conv2d on the same input."""
    host, port = explain_server
    with browser_page() as page:
        _open(page, f"http://{host}:{port}/")
        page.wait_for_function("window.pgState && window.pgState.out !== null")
        assert page.eval_on_selector("#pgn", "e => e.value") == "28"  # the model's input size
        for k, s, p, d in [(3, 1, 0, 1), (5, 2, 2, 1), (3, 3, 1, 2), (2, 1, 1, 1), (4, 2, 0, 3)]:
            _set(page, k=k, s=s, p=p, d=d)
            st = page.evaluate(
                "({...window.pgState, input: Array.from(window.pgState.input), out: Array.from(window.pgState.out)})"
            )
            assert (st["k"], st["s"], st["p"], st["d"]) == (k, s, p, d)
            n = st["n"]
            x = torch.tensor(st["input"], dtype=torch.float64).reshape(1, 1, n, n)
            w = torch.tensor(st["kernel"], dtype=torch.float64).reshape(1, 1, k, k)
            expected = F.conv2d(x, w, stride=s, padding=p, dilation=d)[0, 0]
            side = expected.shape[-1]
            assert st["side"] == side and page.text_content("#pgformula .f").endswith(f"= {side}")
            assert np.allclose(st["out"], expected.flatten().numpy(), atol=1e-4), (k, s, p, d)
            # the window starts on the largest |output|; its arithmetic, as the page shows it, gives that value
            i, j = divmod(int(expected.abs().argmax()), side)
            assert page.text_content("#pgcell").startswith(f"out({i}, {j})")
            assert _close(page.text_content("[data-k='pgvalue']"), float(expected[i, j]))
        page.select_option("#pgn", "8")
        _set(page, k=5, p=0, d=2)  # a dilated 5x5 spans 9 pixels: nothing fits into 8
        assert "= none" in page.text_content("#pgformula") and "no position fits" in page.text_content("#pgformula")
        # the slide animated: the window starts at output (0, 0), goes down the first column, then along the
        # row to the strongest output (the target), one stride at a time
        page.select_option("#pgn", "12")
        _set(page, k=3, s=2, p=1, d=1)
        page.click("#pgslide button")
        page.wait_for_function("document.getElementById('pgslide').dataset.done === '1'")
        ti, tj = divmod(int(np.abs(page.evaluate("Array.from(window.pgState.out)")).argmax()), 6)
        expected = [(r, 0) for r in range(ti + 1)] + [(ti, c) for c in range(1, tj + 1)]
        assert page.get_attribute("#pgslide", "data-path") == " ".join(f"{i},{j}" for i, j in expected)
        assert page.eval_on_selector("#pgslide", "e => [+e.dataset.i, +e.dataset.j]") == [ti, tj]

        page.select_option("#pgpreset", "blur (box)")
        page.wait_for_function("window.pgState.kernel[0][0] > 0")
        assert page.text_content("#error") == ""

        # the student's own picture: read in the browser, never sent (no request leaves the page for it)
        page.select_option("#pgn", "16")
        sent: list[str] = []
        page.on("request", lambda req: sent.append(req.url) if req.url.startswith("http") else None)  # not blob:
        own = np.zeros((30, 40, 3), np.uint8)
        own[:, 20:] = 255  # dark left half, white right half
        Image.fromarray(own).save(tmp_path / "edge.png")
        page.set_input_files("#pgfile", str(tmp_path / "edge.png"))
        page.wait_for_function("window.pgState.image === 'edge.png'")
        grey = np.array(page.evaluate("Array.from(window.pgState.input)")).reshape(16, 16)
        assert grey[:, :6].max() < 0.05 and grey[:, 10:].min() > 0.95 and sent == []
        assert "edge.png" in page.text_content("#pgname")

        # an answer that is not JSON (a proxy's error page) is one readable error line
        page.route("**/api/unit*", lambda route: route.fulfill(status=502, body="<html>Bad Gateway</html>"))
        page.click("#network canvas[data-layer='1'][data-channel='0']")
        page.wait_for_function("document.getElementById('error').textContent !== ''")
        assert page.text_content("#error").startswith("502") and "not JSON" in page.text_content("#error")


@pytest.mark.parametrize("arch,c,samples", [("seed_cnn", 1, "none"), ("lenet5", 3, "refused")])
def test_without_test_images_the_page_analyses_its_own_picture(arch, c, samples, tmp_path):
    """Uploads only: no test split to show (or the server refuses to show it): the page still opens analysed."""
    from explain_helpers import start_server

    from cnnlab.explain.app import create_explain_app
    from cnnlab.models import create_model
    from cnnlab.runs.model_file import save_model_file

    torch.manual_seed(0)
    model = create_model(arch, num_classes=3, in_channels=c, input_size=28).eval()
    meta = {"architecture": arch, "kwargs": {}, "classes": ["a", "b", "c"], "input_shape": [c, 28, 28]}
    folder = save_model_file(tmp_path / "m", model, {**meta, "mean": [0.5] * c, "std": [0.25] * c, "dataset": "none"})
    host, port, stop = start_server(create_explain_app(folder))
    try:
        with browser_page() as page:
            if samples == "refused":  # a server that shows the run's test images only when asked
                page.route("**/api/samples", lambda route: route.fulfill(status=404, body='{"error": {}}'))
            _open(page, f"http://{host}:{port}/")
            source = page.evaluate("document.body.dataset.source")
            assert source.startswith("a digit drawn" if c == 1 else "a picture drawn"), source
            assert page.query_selector_all("#samples img") == [] and page.text_content("#samplenote")
            assert len(page.query_selector_all("#network .col")) == 1 + len(model_layers(page))
            assert page.text_content("#error") == ""
    finally:
        stop()


def model_layers(page) -> list:
    return page.evaluate("S.model.layers")


def test_mounted_in_cnnlab_serve_with_uploads_only(explain_model):
    """At /explain/ inside the prediction server, where the owner has not shared the run's test images: the page
    opens analysed (its own digit), and a unit's arithmetic comes from the mounted API, not the root."""
    from explain_helpers import start_server

    from cnnlab.explain.app import mount_explain
    from cnnlab.serve.app import ServeSettings, create_app

    settings = ServeSettings()
    app = create_app(explain_model, settings)
    mount_explain(app, explain_model, settings)  # as `cnnlab serve --explain` does: uploads only
    host, port, stop = start_server(app, ready="/explain/api/model", settings=settings)
    try:
        with browser_page() as page:
            asked: list[str] = []
            page.on("request", lambda req: asked.append(req.url.split(f":{port}", 1)[-1]))
            _open(page, f"http://{host}:{port}/explain/")
            assert page.evaluate("document.body.dataset.source").startswith("a digit drawn")
            assert page.query_selector_all("#samples img") == [] and page.text_content("#samplenote")
            _click(page, "#network canvas[data-layer='1'][data-channel='0']", 3, 4, "conv")
            assert page.text_content("#error") == ""
            api = [u for u in asked if "/api/" in u]
            assert api and all(u.startswith("/explain/api/") for u in api), api
    finally:
        stop()
