"""``cnnlab predict MODEL PATHS...``: class predictions for image files, folders and globs.

Images are decoded, resized and normalised exactly as evaluation does (the preprocessing comes from
the model file; see :class:`cnnlab.serve.predictor.Predictor`), in batches. A file that cannot be
read is reported on stderr and the others are still predicted; the exit code is then 1.
"""

from __future__ import annotations

import csv
import io
import json
import sys

from cnnlab.cli._options import add_device, add_json, emit_json, run_path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="predict the classes of image files with a trained model",
        description="Predict the top-k classes of image files, folders (searched recursively) and globs "
        "with a model written by cnnlab train (run or model folder) or cnnlab export (.onnx; a TorchScript .pt "
        "only with --trust-torchscript, because TorchScript is code).",
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        type=run_path,
        help="run or model folder, a .onnx / OpenVINO .xml / TorchScript .pt file, or demo:mnist (shipped with cnnlab)",
    )
    p.add_argument("paths", metavar="PATH", nargs="+", help="image files, folders or glob patterns ('*.png')")
    p.add_argument(
        "--top-k", "--topk", dest="topk", type=int, default=5, help="how many classes to list per image (default 5)"
    )
    p.add_argument("--format", choices=["table", "json", "csv"], default="table", help="output format")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    add_json(p, "the predictions (same as --format json)")
    add_device(p, " (.onnx, .xml files and NumPy-engine runs run on the CPU)")
    p.add_argument(
        "--trust-torchscript",
        action="store_true",
        help="allow a TorchScript .pt file: it is a program and runs with your rights (prefer .onnx)",
    )
    p.set_defaults(func=run)


def predict_files(predictor, paths, batch_size: int, topk: int) -> tuple[list[dict], list[dict]]:
    """Predict ``paths`` in batches; returns (results with 'path', errors with 'path' and 'error')."""
    from cnnlab.data.images import ImageReadError

    results, errors = [], []
    for i in range(0, len(paths), batch_size):
        chunk, arrays = [], []
        for path in paths[i : i + batch_size]:
            try:
                arrays.append(predictor.load(path))
                chunk.append(path)
            except ImageReadError as exc:
                errors.append({"path": str(path), "error": exc.reason, "kind": exc.kind})
        if arrays:
            probs = predictor.probabilities(predictor.preprocess(arrays))
            results += [{"path": str(p), **r} for p, r in zip(chunk, predictor.format(probs, topk))]
    return results, errors


def render(results: list[dict], fmt: str) -> str:
    """Results as a table, JSON or CSV (one row per image and rank)."""
    if fmt == "json":
        return json.dumps(results, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "rank", "label", "index", "probability"])
        for r in results:
            for rank, t in enumerate(r["top"], 1):
                w.writerow([r["path"], rank, t["label"], t["index"], f"{t['probability']:.6f}"])
        return buf.getvalue().rstrip("\n")
    width = max([len("path"), *(len(r["path"]) for r in results)])
    lines = [f"{'path':<{width}}  {'label':<12} {'prob':>6}  top-k"]
    for r in results:
        top = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top"])
        lines.append(f"{r['path']:<{width}}  {r['label'][:12]:<12} {r['probability']:6.3f}  {top}")
    return "\n".join(lines)


def run(args) -> int:
    from cnnlab.errors import CnnlabError
    from cnnlab.serve.predictor import Predictor, expand_inputs

    if args.topk < 1:
        raise CnnlabError(f"--top-k must be at least 1, got {args.topk}")
    if args.batch_size < 1:
        raise CnnlabError(f"--batch-size must be at least 1, got {args.batch_size}")
    paths = expand_inputs(args.paths)
    predictor = Predictor(
        args.model, device=args.device, batch_size=args.batch_size, trust_torchscript=args.trust_torchscript
    )
    results, errors = predict_files(predictor, paths, args.batch_size, args.topk)
    if args.json:
        emit_json(args.json, results)
    elif results:
        print(render(results, args.format))
    for e in errors:
        print(f"cnnlab: cannot read {e['path']}: {e['error']}", file=sys.stderr)
    if errors:
        print(f"cnnlab: {len(errors)} of {len(paths)} file(s) could not be read", file=sys.stderr)
    return 1 if errors else 0
