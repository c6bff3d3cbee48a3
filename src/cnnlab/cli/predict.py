"""``cnnlab predict MODEL PATHS...``: class predictions for image files, folders and globs, at scale.

Images are decoded, resized and normalised exactly as evaluation does (the preprocessing comes from
the model file; see :class:`cnnlab.serve.predictor.Predictor`). Folders are streamed: worker
threads decode batches ahead of the model, which runs on torch, ONNX Runtime or OpenVINO
(``--backend``), and each row is written as it comes (table, CSV, JSON Lines or JSON; ``--output``
writes the file atomically), so a 100,000-image folder is never held in memory
(:mod:`cnnlab.serve.batch`). On a folder with one subfolder per class of the model the subfolder
names are the true classes, and accuracy, the per-class report and the confusion matrix follow. A
file that cannot be read is reported on stderr and the others are still predicted; the exit code
is then 1.
"""

from __future__ import annotations

import argparse
import os
import sys

from cnnlab.cli._options import add_device, add_json, run_path


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
    p.add_argument(
        "--format",
        choices=["table", "csv", "jsonl", "json"],
        help="output format (default: from --output's suffix, else table); rows are written as they come",
    )
    p.add_argument("--output", "-o", metavar="FILE", help="write the rows to FILE (.csv, .jsonl, .json), atomically")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    p.add_argument(
        "--backend",
        choices=["auto", "torch", "onnxruntime", "openvino"],
        default="auto",
        help="runtime (default: the model file's own; for a run folder, onnxruntime/openvino use its exported "
        "model.onnx/model.xml, or export one for this command)",
    )
    p.add_argument("--workers", type=int, default=default_workers(), help="threads decoding images ahead of the model")
    p.add_argument(
        "--threads", type=int, help="inference threads of the runtime (default: the cores the --workers leave free)"
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=sys.stderr.isatty(),
        help="a progress bar on stderr (default: when stderr is a terminal)",
    )
    add_json(p, "the predictions (same as --format json)")
    add_device(p, " (.onnx, .xml files and NumPy-engine runs run on the CPU)")
    p.add_argument(
        "--trust-torchscript",
        action="store_true",
        help="allow a TorchScript .pt file: it is a program and runs with your rights (prefer .onnx)",
    )
    p.set_defaults(func=run)


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def run(args) -> int:
    from cnnlab.errors import CnnlabError
    from cnnlab.serve.batch import output_format, predict_files

    if args.topk < 1 or args.batch_size < 1 or args.workers < 1:
        raise CnnlabError("--top-k, --batch-size and --workers must be at least 1")
    output, fmt = args.output, args.format
    if args.json:  # --json [FILE]: the JSON array, printed or written
        output, fmt = (None if args.json == "-" else args.json), "json"
    fmt = output_format(fmt, output)
    from cnnlab.serve.batch import default_threads

    threads = args.threads or default_threads(args.workers)
    if args.backend in ("auto", "torch"):  # torch's thread count is global: set it for this process
        import torch

        torch.set_num_threads(threads)
    to_stdout = output is None
    info = sys.stderr if to_stdout and fmt != "table" else sys.stdout  # never mix text into CSV/JSON on stdout
    bar = _progress_bar(args) if args.progress else None
    bad = []

    def on_error(path, exc) -> None:
        bad.append(path)
        _write_above(bar, f"cnnlab: cannot read {path}: {exc.reason}")

    try:
        summary = predict_files(
            args.model, args.paths, output=output, stream=sys.stdout if to_stdout else None, fmt=fmt,
            backend=args.backend, device=args.device, batch_size=args.batch_size, workers=args.workers,
            topk=args.topk, trust_torchscript=args.trust_torchscript, threads=threads,
            log=lambda s: _write_above(bar, f"cnnlab: {s}"), on_error=on_error,
            progress=(lambda n: bar.update(n - bar.n)) if bar is not None else None,
        )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    _report(summary, output, info)
    if bad:
        n = summary.predicted + len(bad)
        print(f"cnnlab: {len(bad)} of {n} file(s) could not be read", file=sys.stderr)
    return 1 if bad else 0


def _progress_bar(args):
    from tqdm import tqdm

    from cnnlab.serve.batch import check_inputs, count_images

    total = count_images(check_inputs(args.paths))  # a walk without decoding: the bar's total
    return tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True, mininterval=0.5, desc="predict")


def _write_above(bar, line: str) -> None:
    if bar is not None:
        bar.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr)


def _report(summary, output, info) -> None:
    """The closing lines: what was written, the speed, and for a class-per-folder run the scores."""
    from cnnlab.cli.evaluate import confusion_table
    from cnnlab.evaluation.metrics import format_report

    if output is not None:
        print(f"wrote {output}", file=info)
    backend = {"cnnlab": "torch", "onnx": "onnxruntime"}.get(summary.backend, summary.backend)
    print(
        f"predicted {summary.predicted:,} image(s) in {summary.seconds:.1f} s "
        f"({summary.images_per_second:,.0f} images/s, {backend})",
        file=info,
    )
    m = summary.metrics
    if m is None:
        return
    print(f"true classes from the subfolders of {summary.labelled_root}: accuracy {m['accuracy']:.4f} on "
          f"{m['num_samples']:,} image(s)" + (f" ({summary.unlabelled:,} outside the class folders)"
                                              if summary.unlabelled else ""), file=info)  # fmt: skip
    print(format_report(m), file=info)
    print(file=info)
    print(confusion_table(m["classes"], m["confusion_matrix"]), file=info)
