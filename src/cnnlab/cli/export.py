"""``cnnlab export MODEL --format onnx|torchscript|triton``: a deployable file, checked against the original.

After writing the file, both models run on the same N inputs (test images of the model's dataset
when available); the command fails with exit code 1 unless top-1 agreement is 100% and the largest
probability difference is at most 1e-4 (see :mod:`cnnlab.export.parity`).
"""

from __future__ import annotations

from cnnlab.cli._options import add_output, run_path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained model to ONNX, TorchScript, OpenVINO or a Triton repository (parity checked)",
        description="Export a model (run folder or model folder) to ONNX, TorchScript, OpenVINO IR (optionally "
        "INT8) or a Triton model repository, with a dynamic batch "
        "axis; class names and preprocessing travel inside the file. A parity check against the original "
        "model runs afterwards and fails loudly if they disagree.",
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        type=run_path,
        help="run folder or model folder (or demo:mnist, the trained model shipped with cnnlab)",
    )
    p.add_argument(
        "--format",
        choices=["onnx", "torchscript", "openvino", "triton"],
        default="onnx",
        help="export format (default onnx; triton: a Triton/KServe model repository around the ONNX file)",
    )
    p.add_argument(
        "--out", metavar="DIR", help="folder for the file (default: the model folder; triton: MODEL/model/triton)"
    )
    add_output(p, "the exported file", "model.onnx / model.torchscript.pt in --out")
    p.add_argument("--parity-n", type=int, default=64, help="images for the parity check (default 64)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed probability difference")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument(
        "--exporter",
        choices=["dynamo", "legacy"],
        default="dynamo",
        help="ONNX: torch.export-based exporter (default) or the older TorchScript-based one (faster)",
    )
    p.add_argument("--int8", action="store_true", help="openvino: also an NNCF INT8 model, scored on the test split")
    p.add_argument("--calibration", type=int, default=300, help="openvino --int8: training images to calibrate on")
    p.add_argument(
        "--int8-max-drop", type=float, default=0.01, help="openvino --int8: largest accuracy drop kept (0.01 = 1 point)"
    )
    p.add_argument("--model-name", metavar="NAME", help="triton: the model's name (default: the run folder's)")
    p.add_argument("--max-batch-size", type=int, default=64, help="triton: max_batch_size in config.pbtxt (64)")
    p.set_defaults(func=run)


# format -> (default file name in --out, the options its flags give); triton writes a folder: --out is the repository
def _common(args) -> dict:
    return {"parity_n": args.parity_n, "tolerance": args.tolerance}


def _graph(args) -> dict:
    return {**_common(args), "opset": args.opset, "exporter": args.exporter}


FLAGS = {
    "onnx": ("model.onnx", _graph),
    "torchscript": ("model.torchscript.pt", _common),
    "openvino": (
        "model.xml",  # + model.bin beside it
        lambda a: {**_graph(a), "int8": a.int8, "calibration": a.calibration, "max_drop": a.int8_max_drop},
    ),
    "triton": (None, lambda a: {**_graph(a), "name": a.model_name, "max_batch_size": a.max_batch_size}),
}


def run(args) -> int:
    from pathlib import Path

    from cnnlab.errors import CnnlabError
    from cnnlab.export import export

    if args.parity_n < 1:
        raise CnnlabError(f"--parity-n must be at least 1, got {args.parity_n}")
    if args.calibration < 1 or not 0 <= args.int8_max_drop <= 1:
        raise CnnlabError("--calibration must be at least 1 and --int8-max-drop between 0 and 1")
    name, options = FLAGS[args.format]
    if name is None and args.output:
        raise CnnlabError(f"--format {args.format} writes a folder: give it with --out, not --output")
    out = Path(args.output) if args.output else Path(args.out) / name if args.out and name else None
    result = export(args.model, args.format, args.out if name is None else out, **options(args))
    path = result.path
    if args.format == "triton":
        print(f"wrote the Triton model repository {path.parent} (model {path.name}: config.pbtxt, labels.txt, 1/)")
        path = path / "1" / "model.onnx"
    size = sum(f.stat().st_size for f in (path, path.with_suffix(".bin")) if f.is_file())  # openvino: xml + bin
    print(f"wrote {path} ({size / 1e6:.2f} MB, {args.format}, dynamic batch axis)")
    print(result.parity.line())
    if result.int8 is not None:
        print(f"wrote {path.with_name(path.stem + '-int8.xml')} (+ .bin): {result.int8.line()}")
    return 0
