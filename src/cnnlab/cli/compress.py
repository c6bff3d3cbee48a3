"""``cnnlab compress MODEL --method ...``: INT8 quantisation, magnitude pruning or distillation, with a table.

Every method prints size, parameters, latency, throughput, test accuracy and agreement with the
original model before and after (see :mod:`cnnlab.export.compress`), and writes its output next to
the model (or to --out) together with ``compression.json``.
"""

from __future__ import annotations

from cnnlab.cli._options import run_path

METHODS = ["int8-dynamic", "int8-static", "prune", "distill"]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compress",
        help="quantise (INT8), prune or distill a trained model; prints a before/after table",
        description="Compress a model (run folder or model folder) and measure size, latency and accuracy "
        "before and after on the model's own test split.",
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        type=run_path,
        help="run folder or model folder (or demo:mnist, the trained model shipped with cnnlab)",
    )
    p.add_argument("--method", choices=METHODS, required=True, help="what to do")
    p.add_argument("--out", help="output folder (default: next to the model, named after the method)")
    p.add_argument("--calibration", type=int, default=256, help="int8-static: training images for calibration")
    p.add_argument("--amount", type=float, default=0.5, help="prune: fraction of conv/linear weights to zero")
    p.add_argument("--finetune-epochs", type=int, default=1, help="prune: fine-tuning epochs after pruning")
    p.add_argument("--student", default="seed_cnn", help="distill: student architecture (default small seed_cnn)")
    p.add_argument("--student-kwargs", help="distill: JSON keyword arguments, e.g. '{\"widths\": [8, 16, 32]}'")
    p.add_argument("--epochs", type=int, default=5, help="distill: training epochs of the student")
    p.add_argument("--temperature", type=float, default=4.0, help="distill: softmax temperature T")
    p.add_argument("--alpha", type=float, default=0.7, help="distill: weight of the soft-target loss")
    p.add_argument("--baseline", action="store_true", help="distill: also train the student without the teacher")
    p.add_argument("--runs", type=int, default=20, help="timing repetitions (median)")
    p.add_argument("--threads", type=int, help="CPU threads for timing (default: the libraries' choice)")
    p.add_argument("--exporter", choices=["dynamo", "legacy"], default="dynamo", help="int8: ONNX exporter")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from cnnlab.errors import CnnlabError
    from cnnlab.export import compress

    if args.method.startswith("int8"):
        result = compress.quantize_int8(
            args.model, args.method.split("-")[1], args.out, args.calibration, args.runs, args.threads, args.exporter
        )
    elif args.method == "prune":
        result = compress.prune_model(
            args.model, args.amount, args.finetune_epochs, out=args.out, runs=args.runs, threads=args.threads
        )
    else:
        try:
            kwargs = json.loads(args.student_kwargs) if args.student_kwargs else None
        except json.JSONDecodeError as exc:
            raise CnnlabError(f"--student-kwargs is not valid JSON: {exc}") from None
        if kwargs is not None and not isinstance(kwargs, dict):
            raise CnnlabError("--student-kwargs must be a JSON object")
        result = compress.distill_model(
            args.model,
            args.student,
            kwargs,
            args.epochs,
            args.temperature,
            args.alpha,
            args.baseline,
            args.out,
            args.runs,
            threads=args.threads,
        )
    print(result.table())
    print(f"\nwrote {result.out} (compression.json has the table)")
    return 0
