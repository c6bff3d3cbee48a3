"""``cnnlab export MODEL --format onnx|torchscript``: a deployable file, checked against the original.

After writing the file, both models run on the same N inputs (test images of the model's dataset
when available); the command fails with exit code 1 unless top-1 agreement is 100% and the largest
probability difference is at most 1e-4 (see :mod:`cnnlab.export.parity`).
"""

from __future__ import annotations

from cnnlab.cli._options import add_output, run_path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained model to ONNX or TorchScript (with a parity check)",
        description="Export a model (run folder or model folder) to ONNX or TorchScript with a dynamic batch "
        "axis; class names and preprocessing travel inside the file. A parity check against the original "
        "model runs afterwards and fails loudly if they disagree.",
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        type=run_path,
        help="run folder or model folder (or demo:mnist, the trained model shipped with cnnlab)",
    )
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="export format (default onnx)")
    p.add_argument("--out", metavar="DIR", help="folder for the file (default: the model folder)")
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
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from cnnlab.errors import CnnlabError

    if args.parity_n < 1:
        raise CnnlabError(f"--parity-n must be at least 1, got {args.parity_n}")
    name = "model.onnx" if args.format == "onnx" else "model.torchscript.pt"
    out = Path(args.output) if args.output else Path(args.out) / name if args.out else None
    if args.format == "onnx":
        from cnnlab.export.onnx import export_onnx

        out, report = export_onnx(
            args.model,
            out,
            opset=args.opset,
            parity_n=args.parity_n,
            tolerance=args.tolerance,
            exporter=args.exporter,
        )
    else:
        from cnnlab.export.torchscript import export_torchscript

        out, report = export_torchscript(args.model, out, parity_n=args.parity_n, tolerance=args.tolerance)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {args.format}, dynamic batch axis)")
    print(report.line())
    return 0
