"""Export to OpenVINO IR (``model.xml`` + ``model.bin``), parity-checked like ONNX; optional INT8 by NNCF.

The network goes through the ONNX exporter (:func:`cnnlab.export.onnx._torch_export`, dynamic batch
axis) and OpenVINO's converter; the class names and preprocessing travel in the IR's runtime info
under ``cnnlab`` (the same JSON the ONNX metadata holds), so ``cnnlab predict`` and ``cnnlab
serve`` take the ``.xml`` file like an ``.onnx`` one. After writing, the original torch model and
OpenVINO's CPU plugin run on the run's own test images and the export fails unless top-1 agreement
is 100% and the largest probability difference at most ``tolerance`` (:mod:`cnnlab.export.parity`).

``int8=True`` adds ``model-int8.xml``: NNCF's post-training quantisation (OpenVINO's own tooling),
calibrated on the first ``calibration`` images of the run's *training* split, then both models
score the run's test split; the INT8 file is kept only when its accuracy is within ``max_drop``
of the FP32 one, and the report says both accuracies and their top-1 agreement.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.errors import CnnlabError
from cnnlab.export.onnx import DEFAULT_OPSET, _torch_export
from cnnlab.export.parity import ParityReport, compare, parity_inputs, public_meta, require, torch_logits_fn
from cnnlab.files import atomic
from cnnlab.runs.builtin import output_dir
from cnnlab.runs.model_file import _model_folder, load_model

META_KEY = "cnnlab"
# OpenVINO runs in bf16 on CPUs that have it unless told otherwise; cnnlab's parity limit needs fp32
CPU_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def require_openvino():
    try:
        import openvino
    except ImportError:
        raise CnnlabError(
            "OpenVINO export and inference need the 'openvino' extra: pip install 'cnnlab[openvino]'"
        ) from None
    return openvino


def save_ir(ov_model, out: Path) -> None:
    """Write ``out`` (.xml) and its .bin beside it, each through a temporary name and a rename
    (the .bin first, so an .xml under the final name always has its weights)."""
    ov = require_openvino()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.stem}.", dir=out.parent))
    try:
        ov.save_model(ov_model, str(tmp / "model.xml"), compress_to_fp16=False)
        for src, dst in ((tmp / "model.bin", out.with_suffix(".bin")), (tmp / "model.xml", out)):
            atomic.commit(src, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_ir(path: str | Path, threads: int | None = None):
    """(compiled CPU model, cnnlab metadata) of an IR written by :func:`export_openvino`; ``threads``
    caps OpenVINO's inference threads (None: its default, every core)."""
    ov = require_openvino()
    path = Path(path)
    if not path.with_suffix(".bin").is_file():
        raise CnnlabError(f"{path}: its weights file {path.with_suffix('.bin').name} is missing beside it")
    try:
        core = ov.Core()
        model = core.read_model(str(path))
        if not model.has_rt_info([META_KEY]):
            raise CnnlabError(f"{path} has no cnnlab metadata (was it exported by 'cnnlab export --format openvino'?)")
        meta = json.loads(str(model.get_rt_info([META_KEY]).astype(str)))
        config = {**CPU_CONFIG, **({"INFERENCE_NUM_THREADS": int(threads)} if threads else {})}
        compiled = core.compile_model(model, "CPU", config)
    except CnnlabError:
        raise
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError and others for a damaged file
        raise CnnlabError(f"{path} cannot be loaded by OpenVINO ({type(exc).__name__}); re-export it") from None
    if not isinstance(meta, dict):
        raise CnnlabError(f"the cnnlab metadata in {path} is not a JSON object; re-export it")
    return compiled, meta


def openvino_logits_fn(path_or_compiled):
    """A NumPy logits function backed by OpenVINO's CPU plugin (one infer request, reused)."""
    compiled = read_ir(path_or_compiled)[0] if isinstance(path_or_compiled, (str, Path)) else path_or_compiled
    request = compiled.create_infer_request()

    def fn(x: np.ndarray) -> np.ndarray:
        request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)  # copied: the buffer is reused

    return fn


@dataclass
class Int8Report:
    n: int
    fp32_accuracy: float
    int8_accuracy: float
    agreement: float  # top-1 agreement of INT8 with FP32
    calibration: int
    max_drop: float

    @property
    def ok(self) -> bool:
        return self.fp32_accuracy - self.int8_accuracy <= self.max_drop

    def line(self) -> str:
        verdict = "kept" if self.ok else "REFUSED"
        return (
            f"INT8 on {self.n} test images: accuracy {self.int8_accuracy:.2%} vs FP32 {self.fp32_accuracy:.2%}, "
            f"top-1 agreement {self.agreement:.2%} (calibrated on {self.calibration} training images; "
            f"allowed drop {self.max_drop:.1%}) -> {verdict}"
        )


def export_openvino(
    model_path: str | Path,
    out: str | Path | None = None,
    *,
    int8: bool = False,
    calibration: int = 300,
    max_drop: float = 0.01,
    opset: int = DEFAULT_OPSET,
    parity_n: int = 64,
    tolerance: float = 1e-4,
    exporter: str = "dynamo",
) -> tuple[Path, ParityReport, Int8Report | None]:
    """Export ``model_path`` to OpenVINO IR and check parity; with ``int8`` also the NNCF INT8 variant.

    Returns:
        (path of model.xml, parity report, INT8 report or None). Raises CnnlabError if parity fails.
    """
    ov = require_openvino()
    if out is not None and Path(out).suffix != ".xml":
        raise CnnlabError(f"{out}: an OpenVINO model is an .xml file (its weights go to the .bin beside it)")
    model, meta = load_model(model_path)
    out = Path(out) if out is not None else output_dir(_model_folder(model_path)) / "model.xml"
    out.parent.mkdir(parents=True, exist_ok=True)
    ov_model = _convert(ov, model, meta, out.parent, opset, exporter)
    save_ir(ov_model, out)
    x, source = parity_inputs(meta, parity_n, model_path=model_path)
    report = require(compare(torch_logits_fn(model), openvino_logits_fn(out), x, source, tolerance=tolerance), out.name)
    int8_report = _int8(ov_model, model_path, out, calibration, max_drop) if int8 else None
    return out, report, int8_report


def _convert(ov, model: torch.nn.Module, meta: dict[str, Any], where: Path, opset: int, exporter: str):
    """torch -> ONNX (temporary file) -> OpenVINO model with the cnnlab metadata in its runtime info."""
    example = torch.zeros(2, *meta["input_shape"])  # (2, C, H, W): batch 2, so no size-1 specialisation
    with tempfile.TemporaryDirectory(prefix=".cnnlab-ov.", dir=where) as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        try:
            _torch_export(model, example, onnx_path, opset, exporter)
            ov_model = ov.convert_model(str(onnx_path))
        except Exception as exc:  # noqa: BLE001 - both converters raise many types; name the model
            raise CnnlabError(
                f"OpenVINO export of {meta['architecture']} failed: {type(exc).__name__}: {exc}"
            ) from None
    ov_model.set_rt_info(json.dumps(public_meta(meta)), [META_KEY])
    return ov_model


def _int8(ov_model, model_path, out: Path, calibration: int, max_drop: float) -> Int8Report:
    """Quantise with NNCF on training images, score FP32 and INT8 on the test split, keep or refuse."""
    try:
        import nncf
    except ImportError:
        raise CnnlabError("INT8 export needs NNCF: pip install 'cnnlab[openvino]'") from None
    from cnnlab.runs.run import find_run

    run = find_run(model_path)
    if run is None:
        raise CnnlabError(
            f"{model_path}: INT8 needs a run folder (its training images calibrate, its test images score)"
        )
    try:
        train, test = run.examples("train"), run.examples("test")
        calib = train.inputs(np.arange(min(calibration, len(train))))
    except (CnnlabError, OSError) as exc:
        raise CnnlabError(f"INT8 needs the run's images, which cannot be read here: {exc}") from None
    dataset = nncf.Dataset([calib[i : i + 1] for i in range(len(calib))])
    sink = io.StringIO()  # NNCF draws progress bars; keep the command's output ours
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        quantized = nncf.quantize(ov_model, dataset, subset_size=len(calib))
    int8_path = out.with_name(f"{out.stem}-int8.xml")
    save_ir(quantized, int8_path)
    core = require_openvino().Core()
    fp32, q = openvino_logits_fn(core.compile_model(ov_model, "CPU", CPU_CONFIG)), openvino_logits_fn(int8_path)
    p32, p8 = [], []
    for _, x in test.batches(256):
        p32.append(fp32(x).argmax(1))
        p8.append(q(x).argmax(1))
    p32, p8 = np.concatenate(p32), np.concatenate(p8)
    report = Int8Report(
        n=len(test),
        fp32_accuracy=float((p32 == test.labels).mean()),
        int8_accuracy=float((p8 == test.labels).mean()),
        agreement=float((p32 == p8).mean()),
        calibration=len(calib),
        max_drop=max_drop,
    )
    if not report.ok:
        int8_path.unlink(missing_ok=True)
        int8_path.with_suffix(".bin").unlink(missing_ok=True)
        raise CnnlabError(f"{report.line()}; the INT8 file was removed (raise --int8-max-drop to keep it)")
    return report


__all__ = ["export_openvino", "read_ir", "openvino_logits_fn", "save_ir", "Int8Report"]
