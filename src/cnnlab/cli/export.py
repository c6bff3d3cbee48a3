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


def _onnx(args, out):
    from cnnlab.export.onnx import export_onnx

    return export_onnx(
        args.model, out, opset=args.opset, parity_n=args.parity_n, tolerance=args.tolerance, exporter=args.exporter
    )


def _torchscript(args, out):
    from cnnlab.export.torchscript import export_torchscript

    return export_torchscript(args.model, out, parity_n=args.parity_n, tolerance=args.tolerance)


def _triton(args, out):
    from cnnlab.export.triton import export_triton

    folder, report = export_triton(
        args.model,
        args.out,
        name=args.model_name,
        max_batch_size=args.max_batch_size,
        opset=args.opset,
        parity_n=args.parity_n,
        tolerance=args.tolerance,
        exporter=args.exporter,
    )
    print(f"wrote the Triton model repository {folder.parent} (model {folder.name}: config.pbtxt, labels.txt, 1/)")
    return folder / "1" / "model.onnx", report


def _openvino(args, out):
    from cnnlab.export.openvino import export_openvino

    out, report, int8 = export_openvino(
        args.model,
        out,
        int8=args.int8,
        calibration=args.calibration,
        max_drop=args.int8_max_drop,
        opset=args.opset,
        parity_n=args.parity_n,
        tolerance=args.tolerance,
        exporter=args.exporter,
    )
    if int8 is not None:
        print(f"wrote {out.with_name(out.stem + '-int8.xml')} (+ .bin): {int8.line()}")
    return out, report


# format -> (default file name, exporter)
EXPORTERS = {
    "onnx": ("model.onnx", _onnx),
    "torchscript": ("model.torchscript.pt", _torchscript),
    "openvino": ("model.xml", _openvino),  # + model.bin beside it
    "triton": (None, _triton),  # a folder: --out is the repository
}


def run(args) -> int:
    from pathlib import Path

    from cnnlab.errors import CnnlabError

    if args.parity_n < 1:
        raise CnnlabError(f"--parity-n must be at least 1, got {args.parity_n}")
    if args.calibration < 1 or not 0 <= args.int8_max_drop <= 1:
        raise CnnlabError("--calibration must be at least 1 and --int8-max-drop between 0 and 1")
    name, exporter = EXPORTERS[args.format]
    if name is None and args.output:
        raise CnnlabError(f"--format {args.format} writes a folder: give it with --out, not --output")
    out = Path(args.output) if args.output else Path(args.out) / name if args.out and name else None
    out, report = exporter(args, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {args.format}, dynamic batch axis)")
    print(report.line())
    return 0
