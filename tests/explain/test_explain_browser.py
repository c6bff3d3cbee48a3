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

from chromium_helpers import executable, launch
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


def _click(page, layer: int, channel: int, y: int, x: int, kind: str):
    canvas = page.query_selector(f"canvas[data-layer='{layer}'][data-channel='{channel}']")
    scale = float(canvas.get_attribute("data-scale"))
    canvas.scroll_into_view_if_needed()
    canvas.click(position={"x": (x + 0.5) * scale, "y": (y + 0.5) * scale})
    page.wait_for_selector(f"#arith[data-kind='{kind}'] [data-k='value']")
    return lambda key: page.text_content(f"#arith [data-k='{key}']")


def test_explainer_page_shows_the_arithmetic_torch_computes(explain_server, explain_model, tmp_path):
    from playwright.sync_api import sync_playwright

    host, port = explain_server
    image = tmp_path / "digit.png"
    digit_like(28, 3).save(image)
    ref = _torch_reference(explain_model, image)
    executable()
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            external: list[str] = []
            page.on("request", lambda req: external.append(req.url) if f":{port}/" not in req.url else None)
            page.goto(f"http://{host}:{port}/")
            page.wait_for_function("document.getElementById('model').textContent.includes('classes')")
            page.wait_for_selector("#samples img")  # the run's test images, with their labels
            page.set_input_files("#file", str(image))
            page.wait_for_function("document.body.dataset.analysis !== undefined")
            # every layer drawn: input + 25 hooked calls of seed_cnn, all 32 channels of the first conv
            assert len(page.query_selector_all("#network .col")) == 26
            assert len(page.query_selector_all("canvas[data-layer='1']")) == 32

            # a conv unit: patch x kernel summed, plus bias, equals torch's conv2d
            c, y, x = 5, 10, 13
            get = _click(page, 1, c, y, x, "conv")
            expected = float(ref["conv"][0, c, y, x])
            assert _close(get("computed"), expected) and _close(get("value"), expected)
            assert _close(get("sum"), expected - float(get("bias")))
            patch = [float(td.text_content()) for td in page.query_selector_all("#arith table.patch td")]
            assert np.allclose(patch, ref["x"][0, 0, y - 1 : y + 2, x - 1 : x + 2].flatten().numpy(), atol=1e-5)
            box = page.text_content("#rftext")
            assert f"rows {y - 1}-{y + 1}, columns {x - 1}-{x + 1}" in box  # the 3x3 receptive field
            assert page.eval_on_selector(".marker", "m => m.closest('.col').dataset.layer") == "1"  # unit outlined

            # a max-pool unit (layer 4 = features.0.3): the max of its 2x2 window and which input won
            c, y, x = 7, 4, 9
            get = _click(page, 4, c, y, x, "maxpool")
            window = ref["relu"][0, c, 2 * y : 2 * y + 2, 2 * x : 2 * x + 2]
            assert _close(get("computed"), float(ref["pool"][0, c, y, x])) and _close(get("value"), float(window.max()))
            r, q = divmod(int(window.argmax()), 2)
            assert get("winner") == f"({2 * y + r}, {2 * x + q})"

            # the softmax: every probability as torch computes it, and they sum to 1
            probs = [float(page.text_content(f"#softmax tr[data-class='{k}'] [data-k='prob']")) for k in range(10)]
            assert np.allclose(probs, ref["probs"].numpy(), rtol=1e-4, atol=1e-6)
            top = page.query_selector_all("#top .r")
            assert (
                len(top) == 5 and top[0].query_selector(".lab").text_content() == f"digit_{int(ref['probs'].argmax())}"
            )

            # Grad-CAM for a chosen class draws over the input
            page.select_option("#camclass", "3")
            page.click("#gradcam")
            page.wait_for_function("document.getElementById('cam').dataset.target === '3'")
            assert page.text_content("#error") == "" and external == [], external

            # a test image of the run, with its true label; then a digit drawn on the canvas
            page.click("#samples img[data-index='1']")
            page.wait_for_function("document.getElementById('truth').textContent.startsWith('true label: digit_')")
            first = page.evaluate("document.body.dataset.analysis")
            box = page.query_selector("#draw").bounding_box()
            page.mouse.move(box["x"] + 60, box["y"] + 40)
            page.mouse.down()
            page.mouse.move(box["x"] + 100, box["y"] + 160, steps=8)
            page.mouse.up()
            page.click("#drawgo")
            page.wait_for_function(f"document.body.dataset.analysis !== '{first}'")
            assert page.text_content("#truth") == "" and page.text_content("#error") == ""
            assert "196x196" in page.text_content("#steps figure[data-step='decoded']")
        finally:
            browser.close()
