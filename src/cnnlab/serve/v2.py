"""The Open Inference Protocol (KServe v2, the protocol Triton speaks over HTTP) on ``cnnlab serve``.

A team that outgrows one machine runs models behind KServe or Triton and calls them with clients
written for that protocol (``tritonclient``, the KServe SDK). These routes let the same clients call
a cnnlab model, behind the server's own limits (:mod:`cnnlab.serve.app`):

* ``GET /v2``: server metadata; ``GET /v2/models/NAME`` (also ``/versions/1``): model metadata, with
  the classes and normalisation under ``parameters``; ``GET /v2/models/NAME/ready``: 200 once the
  model is loaded and warmed up, 503 + ``Retry-After`` before.
* ``POST /v2/models/NAME/infer`` with exactly one input: ``input``, FP32 ``[B, C, S, S]`` already
  normalised (what the ONNX export takes), or ``image``, BYTES ``[B]``, encoded files (PNG, JPEG,
  ...) decoded and preprocessed exactly as ``/predict`` does. Outputs: ``probabilities`` FP32
  ``[B, K]``, ``label`` BYTES ``[B]`` and ``index`` INT64 ``[B]``; Triton's classification extension
  (``parameters.classification = k`` on ``probabilities``) gives BYTES ``[B, k]`` as
  ``"probability:index:label"``.

Tensor data comes as JSON (flat or nested, row-major; BYTES elements base64-encoded) or through
Triton's binary tensor extension (``Inference-Header-Content-Length``; BYTES elements as a 4-byte
little-endian length and the bytes), which ``tritonclient`` uses by default. Limits are the
server's: the body limit and read timeouts of its guard, at most ``max_files`` images or tensor
rows per request, the decoded-pixel budget and the bounded decode queue (503 + ``Retry-After``),
and one inference thread. Every bad request is a 4xx whose body is the protocol's
``{"error": "message"}`` (with the request id beside it), never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from cnnlab.errors import CnnlabError
from cnnlab.export.parity import public_meta

API_VERSION = "1"  # the protocol surface's version (no library versions in responses)
MODEL_VERSION = "1"  # one model per server, one version
TENSOR_INPUT, IMAGE_INPUT = "input", "image"
OUTPUTS = ("probabilities", "label", "index")
HEADER_LENGTH = "inference-header-content-length"  # Triton's binary tensor extension
MAX_ID_CHARS = 256
# the predictor's kind -> the v2 "platform" name a client sees
PLATFORMS = {
    "cnnlab": "pytorch",
    "torchscript": "pytorch_libtorch",
    "onnx": "onnxruntime_onnx",
    "openvino": "openvino",
    "numpy": "numpy",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_GENERIC = {"model", "models", "1", "triton", ""}


class V2Error(HTTPException):
    """A 4xx of the protocol; the server's error handler shapes it as ``{"error": message, ...}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code


def bad(message: str, code: str = "bad_request") -> V2Error:
    return V2Error(400, code, message)


def served_name(source: str | Path, given: str | None = None) -> str:
    """The model's NAME in the v2 URLs: ``given``, else the nearest folder name that says something
    (``runs/mnist/model/model.onnx`` -> ``mnist``), reduced to ``[A-Za-z0-9_.-]``."""
    if given:
        if _UNSAFE.search(given) or len(given) > 64:
            raise CnnlabError(f"model name {given!r}: use 1-64 of the characters A-Z a-z 0-9 _ . -")
        return given
    p = Path(source)
    for part in [p.stem if p.suffix else p.name, *(q.name for q in p.parents)]:
        name = _UNSAFE.sub("-", part).strip("-.")[:64]
        if name.lower() not in _GENERIC:
            return name
    return "cnnlab"


# ---- the request -----------------------------------------------------------------------------------
@dataclass
class InferRequest:
    """A parsed infer request: its id, one input (normalised tensor or encoded images) and the outputs."""

    id: str | None
    kind: str  # TENSOR_INPUT or IMAGE_INPUT
    tensor: np.ndarray | None  # (B, C, S, S) float32 for TENSOR_INPUT
    images: list[bytes] | None  # encoded files for IMAGE_INPUT
    outputs: list[tuple[str, bool, int]]  # (name, binary, classification k; 0 = plain tensor)

    @property
    def batch(self) -> int:
        return len(self.tensor) if self.tensor is not None else len(self.images)


def split_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """(JSON request, binary tensor data) of a body, with or without Triton's binary extension."""
    if header_length is None:
        head, binary = body, b""
    else:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise bad(f"Inference-Header-Content-Length {header_length[:20]!r} does not fit the {len(body)}-byte body")
        n = int(header_length)
        head, binary = body[:n], body[n:]
    try:
        req = json.loads(head)
    except (ValueError, RecursionError):  # RecursionError: a deeply nested array
        raise bad("the inference request is not valid JSON") from None
    if not isinstance(req, dict):
        raise bad("the inference request must be a JSON object with 'inputs'")
    return req, binary


def parse_request(req: dict, binary: bytes, input_shape: list[int], num_classes: int, max_batch: int) -> InferRequest:
    """Check an infer request against the model and the limits; any problem is a 400 naming it."""
    rid = req.get("id")
    if rid is not None and (not isinstance(rid, str) or len(rid) > MAX_ID_CHARS):
        raise bad(f"'id' must be a string of at most {MAX_ID_CHARS} characters")
    inputs = req.get("inputs")
    want = f"'{TENSOR_INPUT}' (FP32 [B, {', '.join(map(str, input_shape))}], normalised) or '{IMAGE_INPUT}' (BYTES [B])"
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise bad(f"send exactly one input: {want}")
    spec = inputs[0]
    name, datatype = spec.get("name"), spec.get("datatype")
    shape = _shape(spec.get("shape"))
    raw = _raw_data(spec, binary)
    if name == TENSOR_INPUT and datatype == "FP32":
        tensor = _tensor(spec, raw, shape, input_shape, max_batch)
        parsed = InferRequest(rid, TENSOR_INPUT, tensor, None, [])
    elif name == IMAGE_INPUT and datatype == "BYTES":
        parsed = InferRequest(rid, IMAGE_INPUT, None, _images(spec, raw, shape, max_batch), [])
    else:
        raise bad(f"unknown input {str(name)[:40]!r} of type {str(datatype)[:10]!r}; send {want}")
    parsed.outputs = _outputs(req, num_classes)
    return parsed


def _shape(value: Any) -> list[int]:
    ok = isinstance(value, list) and 1 <= len(value) <= 8
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise bad(f"'shape' must be a list of non-negative integers, got {str(value)[:60]}")
    return value


def _raw_data(spec: dict, binary: bytes) -> bytes | None:
    """The input's bytes in the binary extension (the only input, so all of them), or None for JSON data."""
    params = spec.get("parameters") or {}
    if not isinstance(params, dict):
        raise bad("an input's 'parameters' must be an object")
    size = params.get("binary_data_size")
    if size is None:
        if binary:
            raise bad("binary data follows the JSON header but the input has no 'binary_data_size'")
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size != len(binary):
        raise bad(f"'binary_data_size' {str(size)[:20]} does not match the {len(binary)} bytes after the header")
    return binary


def _tensor(spec: dict, raw: bytes | None, shape: list[int], input_shape: list[int], max_batch: int) -> np.ndarray:
    """The FP32 input as (B, C, S, S) float32, checked for shape, size and finiteness."""
    if len(shape) != 4 or shape[1:] != list(input_shape) or not 1 <= shape[0] <= max_batch:
        raise bad(
            f"'{TENSOR_INPUT}' must have shape [B, {', '.join(map(str, input_shape))}] with 1 <= B <= {max_batch}"
        )
    count = math.prod(shape)
    if raw is not None:
        if len(raw) != 4 * count:
            raise bad(f"{len(raw)} bytes of FP32 data for shape {shape} ({4 * count} bytes expected)")
        arr = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    else:
        try:
            arr = np.asarray(spec.get("data"))
        except (ValueError, TypeError, RecursionError):  # ragged nesting, odd objects
            arr = np.asarray([None], dtype=object)
        if arr.dtype.kind not in "fiu" or arr.size != count:
            raise bad(f"'data' must hold {count} numbers for shape {shape} (flat or nested, row-major)")
        arr = arr.astype(np.float32).reshape(-1)
    if not np.isfinite(arr).all():
        raise bad(f"'{TENSOR_INPUT}' holds NaN or infinite values")
    return arr.reshape(shape)


def _images(spec: dict, raw: bytes | None, shape: list[int], max_batch: int) -> list[bytes]:
    """The encoded files of the BYTES input: length-prefixed binary, or base64 strings in JSON."""
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1) or not 1 <= shape[0] <= max_batch:
        raise bad(f"'{IMAGE_INPUT}' must have shape [B] (or [B, 1]) with 1 <= B <= {max_batch}")
    n = shape[0]
    if raw is not None:
        images, at = [], 0
        while at < len(raw):
            if at + 4 > len(raw):
                raise bad("the binary BYTES data ends inside an element's 4-byte length")
            (size,) = struct.unpack_from("<I", raw, at)
            images.append(raw[at + 4 : at + 4 + size])
            at += 4 + size
            if at > len(raw):
                raise bad(f"element {len(images) - 1} of the binary BYTES data is cut short")
            if len(images) > n:  # stop at once: a body of empty elements would otherwise list millions
                break
    else:
        data = spec.get("data")
        if isinstance(data, list) and all(isinstance(d, list) and len(d) == 1 for d in data):
            data = [d[0] for d in data]  # shape [B, 1] sent nested
        if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
            raise bad(f"'{IMAGE_INPUT}' data must be a list of base64 strings, one encoded image file each")
        images = [_base64(d, i) for i, d in enumerate(data)]
    if len(images) != n:
        count = "more" if len(images) > n else str(len(images))
        raise bad(f"'{IMAGE_INPUT}' has shape [{n}] but {count} element(s)")
    return images


def _base64(text: str, i: int) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad(f"{IMAGE_INPUT}[{i}] is not base64; in JSON, send each file base64-encoded") from None


def _outputs(req: dict, num_classes: int) -> list[tuple[str, bool, int]]:
    """The requested outputs as (name, binary, classification k); all three when none is named."""
    params = req.get("parameters") or {}
    if not isinstance(params, dict):
        raise bad("the request's 'parameters' must be an object")
    binary_all = params.get("binary_data_output") is True
    asked = req.get("outputs")
    if asked is None:
        return [(name, binary_all, 0) for name in OUTPUTS]
    if not isinstance(asked, list) or not asked or not all(isinstance(o, dict) for o in asked):
        raise bad("'outputs' must be a non-empty list of objects with a 'name'")
    out = []
    for o in asked:
        name, p = o.get("name"), o.get("parameters") or {}
        if name not in OUTPUTS or not isinstance(p, dict):
            raise bad(f"unknown output {str(name)[:40]!r}; this model gives {', '.join(OUTPUTS)}")
        k = p.get("classification", 0)
        if not isinstance(k, int) or isinstance(k, bool) or k < 0 or (k and name != "probabilities"):
            raise bad("'classification' is a non-negative integer, on the 'probabilities' output")
        out.append((name, p.get("binary_data", binary_all) is True, min(k, num_classes)))
    return out


# ---- the response ----------------------------------------------------------------------------------
def output_tensors(probs: np.ndarray, classes: list[str], name: str, k: int) -> tuple[str, list[int], Any]:
    """(datatype, shape, values) of one output for probabilities (B, K): values as a NumPy array,
    or a list of strings for BYTES."""
    b = len(probs)
    index = probs.argmax(axis=1)
    if k:
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]  # (B, k)
        rows = [f"{probs[r, i]:f}:{i}:{classes[i]}" for r in range(b) for i in top[r]]
        return "BYTES", [b, k], rows
    if name == "probabilities":
        return "FP32", list(probs.shape), probs.astype("<f4")
    if name == "label":
        return "BYTES", [b], [classes[i] for i in index]
    return "INT64", [b], index.astype("<i8")


def _binary(datatype: str, values: Any) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(s.encode())) + s.encode() for s in values)
    return np.ascontiguousarray(values).tobytes()


def infer_response(model_name: str, parsed: InferRequest, probs: np.ndarray, classes: list[str]) -> Response:
    """The protocol's response: JSON, or JSON header + binary tensors when any output asked for binary."""
    outputs, chunks = [], []
    for name, binary, k in parsed.outputs:
        datatype, shape, values = output_tensors(probs, classes, name, k)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if binary:
            chunks.append(_binary(datatype, values))
            tensor["parameters"] = {"binary_data_size": len(chunks[-1])}
        else:
            tensor["data"] = values if isinstance(values, list) else values.reshape(-1).tolist()
        outputs.append(tensor)
    body: dict[str, Any] = {"model_name": model_name, "model_version": MODEL_VERSION, "outputs": outputs}
    if parsed.id is not None:
        body["id"] = parsed.id
    head = json.dumps(body).encode()
    if not chunks:
        return Response(head, media_type="application/json")
    headers = {"Inference-Header-Content-Length": str(len(head))}
    return Response(head + b"".join(chunks), media_type="application/octet-stream", headers=headers)


def model_metadata(name: str, predictor) -> dict[str, Any]:
    """The model metadata response: the two inputs a client may send, the outputs, and the
    classes and preprocessing a client needs to build the FP32 input itself."""
    c, s, _ = predictor.input_shape
    k = len(predictor.classes)
    return {
        "name": name,
        "versions": [MODEL_VERSION],
        "platform": PLATFORMS.get(predictor.kind, predictor.kind),
        "inputs": [
            {"name": TENSOR_INPUT, "datatype": "FP32", "shape": [-1, c, s, s]},
            {"name": IMAGE_INPUT, "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, k]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "index", "datatype": "INT64", "shape": [-1]},
        ],
        "parameters": public_meta(predictor.meta),
    }


# ---- the routes ------------------------------------------------------------------------------------
def add_v2_routes(
    app: FastAPI,
    settings,
    state: dict,
    ready_predictor: Callable,
    name: str,
    decode: Callable,
    pixels_of: Callable[[bytes, int], int],
) -> None:
    """Add the v2 metadata, readiness and infer routes to the server ``app``.

    ``state`` holds the server's admission (decoded-pixel budget and decode queue) and micro-batcher;
    ``decode(predictor, data, name)`` turns an encoded file into a normalised (C, S, S) tensor or
    raises the server's 415/422; ``pixels_of(data, max_pixels)`` reads a file's pixel count from
    its header.
    """

    def check_model(model_name: str, version: str | None) -> None:
        if model_name != name:
            raise V2Error(404, "not_found", f"no model {model_name[:64]!r} here; this server serves {name!r}")
        if version not in (None, MODEL_VERSION):
            raise V2Error(404, "not_found", f"model {name!r} has only version {MODEL_VERSION}")

    @app.get("/v2", summary="Open Inference Protocol (KServe v2): server metadata")
    async def v2_server() -> dict:
        return {"name": "cnnlab", "version": API_VERSION, "extensions": ["binary_tensor_data", "classification"]}

    @app.get("/v2/models/{model_name}", summary="v2 model metadata: inputs, outputs, classes, preprocessing")
    @app.get("/v2/models/{model_name}/versions/{version}", include_in_schema=False)
    async def v2_model(model_name: str, version: str | None = None) -> dict:
        check_model(model_name, version)
        return model_metadata(name, ready_predictor())

    @app.get("/v2/models/{model_name}/ready", summary="v2 model readiness (503 while loading)")
    @app.get("/v2/models/{model_name}/versions/{version}/ready", include_in_schema=False)
    async def v2_model_ready(model_name: str, version: str | None = None) -> dict:
        check_model(model_name, version)
        ready_predictor()
        return {"name": name, "ready": True}

    @app.post("/v2/models/{model_name}/infer", summary="v2 inference: FP32 'input' or BYTES 'image'")
    @app.post("/v2/models/{model_name}/versions/{version}/infer", include_in_schema=False)
    async def v2_infer(request: Request, model_name: str, version: str | None = None) -> Response:
        check_model(model_name, version)
        predictor = ready_predictor()
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise V2Error(
                415, "unsupported_encoding", f"Content-Encoding {encoding[:20]!r}; send the body uncompressed"
            )
        req, binary = split_body(await request.body(), request.headers.get(HEADER_LENGTH))
        parsed = parse_request(req, binary, predictor.input_shape, len(predictor.classes), settings.max_files)
        probs = await _run(parsed, predictor, settings, state, decode, pixels_of, request)
        return infer_response(name, parsed, probs, predictor.classes)


async def _run(parsed: InferRequest, predictor, settings, state: dict, decode, pixels_of, request) -> np.ndarray:
    """Probabilities (B, K) for the request, inside the server's admission (pixel budget, queue; dropped when
    its client has gone while it waited)."""
    if parsed.kind == TENSOR_INPUT:
        pixels = parsed.batch * predictor.size * predictor.size
    else:
        pixels = sum(pixels_of(data, settings.max_pixels) for data in parsed.images)
    async with state["admission"].slot(pixels, request):
        if parsed.kind == TENSOR_INPUT:
            x = torch.from_numpy(parsed.tensor).to(predictor.device)
        else:
            xs = [
                await run_in_threadpool(decode, predictor, d, f"{IMAGE_INPUT}[{i}]")
                for i, d in enumerate(parsed.images)
            ]
            x = torch.stack(xs)  # (B, C, S, S)
        batcher = state["batcher"]
        probs = (await batcher.submit(x[0]))[None] if len(x) == 1 else await batcher.run_batch(x)
    probs = probs.float().cpu().numpy()
    if not np.isfinite(probs).all():
        raise V2Error(422, "non_finite", "the model's output for this input is not finite; check the input's scale")
    return probs


__all__ = ["add_v2_routes", "served_name", "parse_request", "split_body", "infer_response", "model_metadata"]
