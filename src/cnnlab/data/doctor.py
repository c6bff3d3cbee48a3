"""The data doctor (``cnnlab data check``): everything that can be wrong with a dataset, before training.

Practitioners' folders break training in known ways: a truncated JPEG kills a DataLoader worker
(torchvision #138), an empty class folder fails obscurely (torchvision #4925), copies of test
images sit in the training set (leakage: the test score is then too good), and imbalanced classes
go unnoticed (Ultralytics #3660). The doctor reads every file once (the SHA-256 is taken from the
same bytes that are decoded), decodes it once with the same rule training uses
(:mod:`cnnlab.data.images`) and reports:

* images per split and class; image modes, formats and the distribution of sizes;
* every unreadable file with its reason (empty, truncated, not an image, unsupported, too large, corrupt);
* exact duplicates (same SHA-256) within a split (warning) and across train and val/test (an error:
  leakage); the same bytes under two class names is a label conflict (an error; near-duplicates
  under two class names are a possible one, a warning);
* optionally near-duplicates by perceptual hashes (dHash and aHash, 64 bits each, written here with
  Pillow and NumPy): two images are near-duplicates when both hashes differ in at most
  ``threshold`` bits; across train and val/test they are reported as possible leakage (a warning,
  since a perceptual hash can be fooled);
* class imbalance with the class weights ``--balance weights`` trains with: ``w_c = n / (K * n_c)``
  over the classes of the training split (scikit-learn's "balanced" rule; an empty class gets 0).

Errors (the exit code is 1), the problems ``cnnlab train`` refuses: unreadable files,
train<->val/test leakage, label conflicts, empty class folders, a class-set mismatch between splits,
no images. Everything else is a warning (exit code 0).
Named datasets (``mnist-sample``, ``cifar10`` ...) are checked from their arrays: counts,
imbalance and duplicates by hashing each image's bytes.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.data.folder import IMAGE_EXTENSIONS, SPLIT_ORDER, FolderScan, collect_folder
from cnnlab.data.images import SUPPORTED_MODES, ImageReadError, open_image
from cnnlab.data.screening import NEAR_DUPLICATE_THRESHOLD, groups_from_pairs, near_duplicate_pairs, perceptual_hashes
from cnnlab.data.splits import balanced_class_weights
from cnnlab.errors import CnnlabError, did_you_mean
from cnnlab.files.kinds import file_kind, is_regular_file

# Extensions each detected format is expected to have; a mismatch is a warning (the file still loads).
_FORMAT_EXTENSIONS = {
    "JPEG": {".jpg", ".jpeg"},
    "PNG": {".png"},
    "BMP": {".bmp"},
    "GIF": {".gif"},
    "TIFF": {".tif", ".tiff"},
    "WEBP": {".webp"},
    "PPM": {".ppm", ".pgm", ".pbm", ".pnm"},
}
CSV_OPTIONS = ("path_column", "label_column", "split_column", "csv_root")  # check(): for csv:FILE only
IMBALANCE_WARN_RATIO = 1.5  # largest / smallest class count in the training split above this: warn


@dataclass
class FileRecord:
    """What the doctor learnt about one file (``rel``: path relative to the dataset root, '/'-separated)."""

    rel: str
    split: str
    class_name: str
    size_bytes: int = 0
    sha256: str = ""
    format: str | None = None
    mode: str | None = None
    width: int = 0
    height: int = 0
    error_kind: str | None = None
    error: str | None = None
    dhash: int | None = None
    ahash: int | None = None


@dataclass
class Issue:
    """One problem: ``code`` (e.g. 'unreadable', 'leak'), a one-line message and the files concerned."""

    code: str
    message: str
    paths: list[str] = field(default_factory=list)


@dataclass
class Report:
    """The doctor's findings; ``to_dict`` is the JSON report, ``summary`` the one-screen text."""

    target: str
    kind: str  # "folder" or "arrays"
    classes: list[str]
    counts: dict[str, dict[str, int]]
    layout: str | None = None
    modes: dict[str, int] = field(default_factory=dict)
    formats: dict[str, int] = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)
    unreadable: list[dict] = field(default_factory=list)
    exact_duplicates: list[dict] = field(default_factory=list)
    near_duplicates: list[dict] | None = None
    imbalance: dict = field(default_factory=dict)
    skipped_files: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["exit_code"] = self.exit_code
        return d

    def summary(self, max_lines: int = 8) -> str:
        """The one-screen text: counts table, modes/sizes, weights, then errors and warnings."""
        return render_summary(self, max_lines=max_lines)


# --- per-file work ----------------------------------------------------------------------------------


def inspect_file(path: Path, rec: FileRecord, near: bool) -> FileRecord:
    """Fill ``rec`` from one read of ``path``: hash, format, mode, size, error, perceptual hashes."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        rec.error_kind, rec.error = "corrupt", f"cannot open the file: {exc.strerror or exc}"
        return rec
    rec.size_bytes = len(data)
    rec.sha256 = hashlib.sha256(data).hexdigest()
    try:
        img = open_image(data, name=rec.rel)
        rec.format, rec.mode, (rec.width, rec.height) = img.format, img.mode, img.size
        if img.mode not in SUPPORTED_MODES:
            raise ImageReadError(rec.rel, "unsupported", f"unsupported image mode {img.mode!r}")
        if near:
            rec.dhash, rec.ahash = perceptual_hashes(img)
    except ImageReadError as exc:
        rec.error_kind, rec.error = exc.kind, exc.reason
    return rec


def _records(
    scan: FolderScan, near: bool, workers: int, progress: Callable[[int, int], None] | None
) -> list[FileRecord]:
    """Inspect every file of the scan, in ``workers`` threads (hashing and decoding release the GIL)."""
    root = scan.root
    jobs = [
        (p, FileRecord(p.relative_to(root).as_posix(), split, scan.classes[y]))
        for split, samples in scan.splits.items()
        for p, y in samples
        if is_regular_file(p)  # reading a FIFO named x.jpg would wait forever; check_folder warns about it
    ]
    out: list[FileRecord] = []
    if workers <= 1:
        results: Iterable[FileRecord] = (inspect_file(p, r, near) for p, r in jobs)
    else:
        pool = ThreadPoolExecutor(workers)
        results = pool.map(lambda job: inspect_file(job[0], job[1], near), jobs)
    for rec in results:
        out.append(rec)
        if progress:
            progress(len(out), len(jobs))
    if workers > 1:
        pool.shutdown()
    return out


# --- the checks -------------------------------------------------------------------------------------


def class_weights(counts: dict[str, int]) -> dict[str, float]:
    """The weights ``--balance weights`` trains with, ``w_c = n / (K * n_c)``, per class name; empty: 0."""
    return {c: round(w, 4) for c, w in zip(counts, balanced_class_weights(counts.values()))}


def _imbalance(counts: dict[str, dict[str, int]], warnings: list[Issue]) -> dict:
    """Imbalance figures and weights from the training split (or the only split there is)."""
    split = "train" if "train" in counts else next(iter(counts))
    per = counts[split]
    nonzero = [n for n in per.values() if n > 0]
    ratio = (max(nonzero) / min(nonzero)) if nonzero else None
    out = {
        "split": split,
        "counts": per,
        "largest": max(per, key=per.get) if per else None,
        "smallest": min(per, key=per.get) if per else None,
        "ratio": round(ratio, 3) if ratio else None,
        "class_weights": class_weights(per),
        "formula": "w_c = n / (K * n_c)",
    }
    if ratio and ratio > IMBALANCE_WARN_RATIO:
        big, small = max(per, key=per.get), min((c for c in per if per[c] > 0), key=per.get)
        warnings.append(
            Issue(
                "imbalance",
                f"{split}: classes are imbalanced, {big!r} has {per[big]} images and {small!r} {per[small]} "
                f"(ratio {ratio:.1f}); consider --balance weights or --balance sampler",
            )
        )
    return out


def _exact_duplicates(
    groups: Iterable[list[tuple[str, str, str]]], errors: list, warnings: list, flat: bool = False
) -> list[dict]:
    """Report groups of identical items; each item is (name, split, class). ``flat``: one unsplit folder."""
    out = []
    for items in groups:
        names = [n for n, _, _ in items]
        splits = _ordered({s for _, s, _ in items})
        classes = sorted({c for _, _, c in items})
        leak = "train" in splits and len(splits) > 1
        conflict = len(classes) > 1
        out.append({"files": names, "splits": splits, "classes": classes, "leak": leak, "label_conflict": conflict})
        joined = " == ".join(names[:4]) + (f" (+{len(names) - 4} more)" if len(names) > 4 else "")
        if leak:
            errors.append(Issue("leak", f"{joined}: the same image is in {' and '.join(splits)} (leakage)", names))
        elif len(splits) > 1:
            warnings.append(Issue("duplicate", f"{joined}: the same image is in {' and '.join(splits)}", names))
        else:
            where = "the folder (a random split may separate them)" if flat else splits[0]
            warnings.append(Issue("duplicate", f"{joined}: identical files in {where}", names))
        if conflict:  # an error: training refuses it (data.on_label_conflict)
            errors.append(Issue("label_conflict", f"{joined}: the same image is labelled {classes}", names))
    return out


def _ordered(splits: set[str]) -> list[str]:
    """Split names in train, val, test order."""
    return sorted(splits, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 9, s))


def _near_duplicates(recs: list[FileRecord], threshold: int, warnings: list[Issue], flat: bool = False) -> list[dict]:
    """Near-duplicate groups among readable files; exact copies are left to the exact check."""
    good = [r for r in recs if r.dhash is not None]
    if len(good) < 2:
        return []
    dh = np.array([r.dhash for r in good], dtype=np.uint64)
    ah = np.array([r.ahash for r in good], dtype=np.uint64)
    found, crowded = near_duplicate_pairs(dh, ah, threshold)
    if crowded.mean() > 0.5:  # e.g. MNIST: 8x8 hashes of digits on black cannot tell images apart
        warnings.append(
            Issue(
                "near_duplicate_unusable",
                f"{int(crowded.sum())} of {len(good)} images share their perceptual hash bands with hundreds of "
                "others (low-detail images); the near-duplicate search is not meaningful here and was skipped",
            )
        )
        return []
    if crowded.any():
        warnings.append(
            Issue(
                "near_duplicate_crowded",
                f"{int(crowded.sum())} images have low-detail perceptual hashes shared by many others (e.g. plain "
                "backgrounds); near-duplicates among them were not searched",
            )
        )
    pairs = [(i, j) for i, j in found if good[i].sha256 != good[j].sha256]
    out = []
    for comp in groups_from_pairs(len(good), pairs):
        items = [good[i] for i in comp]
        names = [r.rel for r in items]
        splits = _ordered({r.split for r in items})
        leak = "train" in splits and len(splits) > 1
        out.append({"files": names, "splits": splits, "classes": sorted({r.class_name for r in items}), "leak": leak})
        joined = " ~ ".join(names[:4]) + (f" (+{len(names) - 4} more)" if len(names) > 4 else "")
        where = f"across {' and '.join(splits)}, possible leakage" if leak else f"in {', '.join(splits)}"
        where = "in the folder (a random split may separate them)" if flat else where
        warnings.append(Issue("near_duplicate", f"{joined}: near-duplicates {where}", names))
        if len(out[-1]["classes"]) > 1:  # perceptual hashes can be fooled: a warning, not an error
            text = f"{joined}: look alike but are labelled {out[-1]['classes']} (possibly one image, two labels)"
            warnings.append(Issue("label_conflict", text, names))
    return out


def _size_stats(recs: list[FileRecord]) -> dict:
    ok = [r for r in recs if r.error is None]
    if not ok:
        return {}
    w = np.array([r.width for r in ok])
    h = np.array([r.height for r in ok])
    common = Counter(f"{r.width}x{r.height}" for r in ok).most_common(5)
    return {
        "width": {"min": int(w.min()), "median": float(np.median(w)), "max": int(w.max())},
        "height": {"min": int(h.min()), "median": float(np.median(h)), "max": int(h.max())},
        "distinct": len({(r.width, r.height) for r in ok}),
        "most_common": [[s, n] for s, n in common],
    }


def _readable_counts(scan: FolderScan, recs: list[FileRecord]) -> dict[str, dict[str, int]]:
    """Readable images per split and class (unreadable files are listed separately, not counted)."""
    counts = {split: dict.fromkeys(scan.classes, 0) for split in scan.splits}
    for r in recs:
        if r.error is None:
            counts[r.split][r.class_name] += 1
    return counts


def _structure_issues(scan: FolderScan, errors: list[Issue], warnings: list[Issue]) -> None:
    for split, names in scan.empty_classes.items():
        for c in names:
            errors.append(Issue("empty_class", f"{split}/{c}: class folder has no images", [f"{split}/{c}"]))
    for split, names in scan.missing_classes.items():
        listed = ", ".join(repr(c) for c in names)
        errors.append(Issue("class_mismatch", f"{split}: lacks class folder(s) {listed} that other splits have"))
    root = scan.root
    for p in scan.skipped_files:
        rel = p.relative_to(root).as_posix()
        why = "outside any class folder" if p.suffix.lower() in IMAGE_EXTENSIONS else "not an image extension"
        warnings.append(Issue("skipped", f"{rel}: {why}, ignored", [rel]))


def _format_mismatches(recs: list[FileRecord], warnings: list[Issue]) -> None:
    for r in recs:
        ext = Path(r.rel).suffix.lower()
        if r.format in _FORMAT_EXTENSIONS and ext not in _FORMAT_EXTENSIONS[r.format]:
            warnings.append(
                Issue("format_mismatch", f"{r.rel}: named {ext} but holds {r.format} (loads fine)", [r.rel])
            )


def check_folder(
    root: str | Path,
    *,
    near_duplicates: bool = False,
    threshold: int = NEAR_DUPLICATE_THRESHOLD,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Check a ``folder:PATH`` dataset; see the module docstring for what is reported.

    Args:
        root: the dataset folder (either layout of :func:`cnnlab.data.folder.scan_folder`).
        near_duplicates: also look for near-duplicates with perceptual hashes (about doubles the time).
        threshold: bits (of 64) that both hashes may differ in for a near-duplicate.
        workers: threads reading and decoding files (decoding releases the GIL; 1 = no threads).
        progress: called as ``progress(done, total)`` after each file.
    """
    start = time.perf_counter()
    return _check_scan(collect_folder(root), str(root), near_duplicates, threshold, workers, progress, start)


def check_csv(
    csv_path: str | Path,
    *,
    near_duplicates: bool = False,
    threshold: int = NEAR_DUPLICATE_THRESHOLD,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    path_column: str | None = None,
    label_column: str | None = None,
    split_column: str | None = None,
    csv_root: str | None = None,
) -> Report:
    """Check a ``csv:FILE`` dataset: the rows (empty or unknown labels, bad split values, paths outside
    the data folder, repeated rows), missing files, then every check of :func:`check_folder` on the
    files it lists, a file under two labels or in two splits included (the same bytes twice).

    Args:
        csv_path: the label CSV.
        path_column, label_column, split_column, csv_root: as ``data.csv_*`` for training (None: found
            by the header; the CSV's folder); the rest as for :func:`check_folder`.
    """
    from cnnlab.data.labels_csv import ERRORS, read_labels, table_scan

    start = time.perf_counter()
    table = read_labels(
        csv_path, path_column=path_column, label_column=label_column, split_column=split_column, root=csv_root
    )
    scan = table_scan(table)
    errors: list[Issue] = []
    warnings: list[Issue] = []
    for code, message, paths in table.problems:
        (errors if code in ERRORS else warnings).append(Issue(code, message, paths))
    kinds = {p: file_kind(p) for samples in scan.splits.values() for p, _ in samples}
    for p, kind in sorted((p, k) for p, k in kinds.items() if k is not None):  # training cannot read these
        rel = p.relative_to(scan.root).as_posix()
        if kind in ("missing", "a broken link"):
            errors.append(Issue("missing", f"{rel}: no such file (listed in {Path(csv_path).name})", [rel]))
        else:
            errors.append(Issue("not_a_file", f"{rel}: {kind}, not an image file", [rel]))
    missing = {p for p, kind in kinds.items() if kind is not None}
    scan.splits = {s: [(p, y) for p, y in v if p not in missing] for s, v in scan.splits.items()}
    report = _check_scan(scan, f"csv:{csv_path}", near_duplicates, threshold, workers, progress, start)
    report.errors[:0], report.warnings[:0] = errors, warnings
    return report


def _check_scan(
    scan: FolderScan,
    target: str,
    near_duplicates: bool,
    threshold: int,
    workers: int,
    progress: Callable[[int, int], None] | None,
    start: float,
) -> Report:
    """Every file check on a scan (of a folder, or of a label CSV's rows)."""
    recs = _records(scan, near_duplicates, workers, progress)
    errors: list[Issue] = []
    warnings: list[Issue] = []
    _structure_issues(scan, errors, warnings)
    for p in (p for samples in scan.splits.values() for p, _ in samples if not is_regular_file(p)):
        rel = p.relative_to(scan.root).as_posix()
        warnings.append(Issue("not_a_file", f"{rel}: not a regular file (FIFO, socket or device); skipped", [rel]))
    if scan.num_images == 0:
        errors.append(Issue("no_images", f"no images found under {scan.root}"))
    bad = [r for r in recs if r.error is not None]
    for r in bad:
        errors.append(Issue("unreadable", f"{r.rel}: {r.error}", [r.rel]))
    by_hash: dict[str, list[FileRecord]] = defaultdict(list)
    for r in recs:
        if r.sha256 and r.size_bytes:
            by_hash[r.sha256].append(r)
    dup_groups = [[(r.rel, r.split, r.class_name) for r in g] for g in by_hash.values() if len(g) > 1]
    flat = scan.layout == "flat"
    exact = _exact_duplicates(sorted(dup_groups), errors, warnings, flat)
    near = _near_duplicates(recs, threshold, warnings, flat) if near_duplicates else None
    _format_mismatches(recs, warnings)
    counts = _readable_counts(scan, recs)
    return Report(
        target=target,
        kind="folder",
        layout=scan.layout,
        classes=scan.classes,
        counts=counts,
        modes=dict(Counter(r.mode for r in recs if r.mode).most_common()),
        formats=dict(Counter(r.format for r in recs if r.format).most_common()),
        sizes=_size_stats(recs),
        unreadable=[
            {"path": r.rel, "split": r.split, "class": r.class_name, "kind": r.error_kind, "reason": r.error}
            for r in bad
        ],
        exact_duplicates=exact,
        near_duplicates=near,
        imbalance=_imbalance(counts, warnings),
        skipped_files=[p.relative_to(scan.root).as_posix() for p in scan.skipped_files],
        ignored=[p.relative_to(scan.root).as_posix() for p in scan.ignored],
        errors=errors,
        warnings=warnings,
        seconds=round(time.perf_counter() - start, 3),
    )


# --- pre-flight screening for training (--on-bad-image skip|fail) -----------------------------------

# --- named datasets (arrays) ------------------------------------------------------------------------


def _array_hashes(images: np.ndarray) -> list[str]:
    """BLAKE2b digest of each image's bytes, (N, H, W, C) uint8 -> N hex strings."""
    flat = np.ascontiguousarray(images).reshape(len(images), -1)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in flat]


def _array_records(ds, near: bool) -> list[FileRecord]:
    """One FileRecord per image of an in-memory dataset, named ``split[i]``; hashes from the array bytes."""
    classes = list(ds.classes)
    recs = []
    for split, x, y in (("train", ds.train_images, ds.train_labels), ("test", ds.test_images, ds.test_labels)):
        y = np.asarray(y)
        for i, digest in enumerate(_array_hashes(x)):
            rec = FileRecord(f"{split}[{i}]", split, classes[int(y[i])], sha256=digest, size_bytes=x[i].nbytes)
            rec.width, rec.height = x.shape[2], x.shape[1]
            if near:  # (H, W, C) uint8 -> PIL image, then the same hashes as for files
                rec.dhash, rec.ahash = perceptual_hashes(Image.fromarray(x[i][..., 0] if x.shape[3] == 1 else x[i]))
            recs.append(rec)
    return recs


def check_arrays(
    ds, name: str | None = None, *, near_duplicates: bool = False, threshold: int = NEAR_DUPLICATE_THRESHOLD
) -> Report:
    """Check an in-memory dataset (``train_images`` (N, H, W, C) uint8, labels, ``classes``).

    Reports counts per split and class, the image shape, imbalance and weights, exact duplicates
    within and across train/test found by hashing each image's bytes (items are named ``split[i]``),
    and optionally near-duplicates by the same perceptual hashes as for files.
    """
    start = time.perf_counter()
    classes = list(ds.classes)
    recs = _array_records(ds, near_duplicates)
    counts = {s: dict.fromkeys(classes, 0) for s in ("train", "test")}
    by_hash: dict[str, list[FileRecord]] = defaultdict(list)
    for r in recs:
        counts[r.split][r.class_name] += 1
        by_hash[r.sha256].append(r)
    errors: list[Issue] = []
    warnings: list[Issue] = []
    for split, per in counts.items():
        errors += [Issue("empty_class", f"{split}: class {c!r} has no images") for c, n in per.items() if n == 0]
    groups = [[(r.rel, r.split, r.class_name) for r in g] for g in by_hash.values() if len(g) > 1]
    exact = _exact_duplicates(groups, errors, warnings)
    near = _near_duplicates(recs, threshold, warnings) if near_duplicates else None
    n, h, w, ch = ds.train_images.shape
    return Report(
        target=name or getattr(ds, "name", "arrays"),
        kind="arrays",
        classes=classes,
        counts=counts,
        modes={"L" if ch == 1 else "RGB": len(recs)},
        sizes=_size_stats(recs),
        exact_duplicates=exact,
        near_duplicates=near,
        imbalance=_imbalance(counts, warnings),
        errors=errors,
        warnings=warnings,
        seconds=round(time.perf_counter() - start, 3),
    )


def check(target: str, *, root: str | Path | None = None, **kw) -> Report:
    """Check ``folder:PATH``, ``csv:FILE`` (with ``path_column``, ``label_column``, ``split_column``,
    ``csv_root``), a folder path, or a registered dataset name (``mnist-sample``, ``cifar10`` ...)."""
    if target.startswith("csv:"):
        return check_csv(target[len("csv:") :], **kw)
    kw = {k: v for k, v in kw.items() if k not in CSV_OPTIONS}
    if target.startswith("folder:"):
        return check_folder(target[len("folder:") :], **kw)
    path = Path(target).expanduser()
    if path.exists() or "/" in target or "\\" in target:
        return check_folder(path, **kw)
    from cnnlab.data.datasets import list_datasets, load_dataset  # local import: only names need it

    names = [n for n in list_datasets() if n != "folder:PATH"]
    if target not in names:
        raise CnnlabError(
            f"{target!r} is neither a folder ({path.resolve()} does not exist) nor a dataset name."
            f"{did_you_mean(target, names)} Datasets: {', '.join(names)}; for a folder, check the path."
        )
    ds = load_dataset(target, root=root)
    if hasattr(ds, "splits"):  # a FolderDataset (should not happen for names, but be safe)
        return check_folder(ds.root, **kw)
    near = {k: kw[k] for k in ("near_duplicates", "threshold") if k in kw}
    return check_arrays(ds, name=target, **near)


# --- the one-screen summary -------------------------------------------------------------------------


def _table(report: Report) -> list[str]:
    splits = list(report.counts)
    if report.layout == "flat":  # one folder, split later: its only "split" is everything
        report = Report(**{**report.__dict__, "counts": {"images": report.counts["train"]}})
        splits = ["images"]
    width = max([5, *(len(c) for c in report.classes)])
    lines = [f"  {'class':<{width}} " + " ".join(f"{s:>7}" for s in splits)]
    for c in report.classes:
        lines.append(f"  {c:<{width}} " + " ".join(f"{report.counts[s].get(c, 0):>7}" for s in splits))
    lines.append(f"  {'total':<{width}} " + " ".join(f"{sum(report.counts[s].values()):>7}" for s in splits))
    return lines


# Findings that change what a user should do next: never folded into "... and N more".
NEVER_FOLDED = ("leak", "imbalance", "class_mismatch", "empty_class", "no_images", "label_conflict")


def _issue_lines(title: str, issues: list[Issue], max_lines: int) -> list[str]:
    """Up to ``max_lines`` issues, the ones that change what to do first and always shown in full."""
    if not issues:
        return []
    key = [i for i in issues if i.code in NEVER_FOLDED]
    rest = [i for i in issues if i.code not in NEVER_FOLDED]
    shown = key + rest[: max(0, max_lines - len(key))]
    lines = [f"{title} ({len(issues)})"] + [f"  {i.code:<15} {i.message}" for i in shown]
    if len(issues) > len(shown):
        lines.append(f"  ... and {len(issues) - len(shown)} more (see the JSON report: --json FILE)")
    return lines


def render_summary(report: Report, max_lines: int = 8) -> str:
    """Plain-text summary that fits on one screen for up to about 15 classes."""
    total = sum(sum(per.values()) for per in report.counts.values())
    head = f"cnnlab data check: {report.target}"
    if report.layout:
        head += f" (layout: {report.layout})"
    bad = f" (+{len(report.unreadable)} unreadable, not counted)" if report.unreadable else ""
    lines = [
        head,
        f"{len(report.classes)} classes, {total} readable images{bad}, checked in {report.seconds:.2f} s",
        "",
    ]
    if len(report.classes) <= 30:
        lines += _table(report)
    else:
        lines += ["  per split: " + ", ".join(f"{s} {sum(p.values())}" for s, p in report.counts.items())]
    lines.append("")
    if report.modes:
        lines.append("modes:   " + ", ".join(f"{m}={n}" for m, n in report.modes.items()))
    if report.formats:
        lines.append("formats: " + ", ".join(f"{f}={n}" for f, n in report.formats.items()))
    if report.sizes:
        sz = report.sizes
        common = ", ".join(f"{s} ({n})" for s, n in sz["most_common"][:3])
        lines.append(
            f"sizes:   {sz['distinct']} distinct; most common {common}; width {sz['width']['min']}-"
            f"{sz['width']['max']}, height {sz['height']['min']}-{sz['height']['max']}"
        )
    imb = report.imbalance
    if imb.get("class_weights") and len(report.classes) <= 30:
        weights = ", ".join(f"{c} {w:.2f}" for c, w in imb["class_weights"].items())
        lines.append(f"class weights ({imb['split']}, {imb['formula']}): {weights}")
    lines.append("")
    lines += _issue_lines("ERRORS", report.errors, max_lines)
    lines += _issue_lines("WARNINGS", report.warnings, max_lines)
    verdict = "FAILED" if report.errors else "OK"
    lines.append(f"{verdict}: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    return "\n".join(lines)
