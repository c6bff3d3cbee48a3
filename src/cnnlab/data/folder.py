"""Finding the images and class labels in a user's folder (``folder:PATH`` data), and split manifests.

Two layouts are understood. *Splits*: the folder holds ``train/``, ``val/`` and/or ``test/`` (also
spelled ``valid/`` or ``validation/``), each with one subfolder per class. *Flat*: the folder holds
one subfolder per class; every image goes to "train" and the caller splits it (stratified and seeded,
in ``cnnlab.data.splits``). Class names are the subfolder names, sorted, and a label is a name's
index in that sorted list (as torchvision's ``ImageFolder`` does), so CIFAR-10's folder names give
CIFAR-10's label order. Hidden things that operating systems and notebooks leave behind (names
starting with '.', ``__MACOSX``, ``.ipynb_checkpoints``, ``Thumbs.db``, ``desktop.ini``) are ignored.

The split manifest is a CSV (``split,path,label,class,sha256``; paths relative to the dataset
root, with '/' separators) that records which file went to which split and its content hash, so a
later run can reuse the exact split and notice files that changed since.

This module only walks the file tree; it never decodes an image (``cnnlab.data.images`` does) and
never imports torch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic, tables
from cnnlab.files.kinds import is_regular_file

# Extensions (lower-case) of files treated as images; anything else inside a class folder is
# listed in FolderScan.skipped_files so the doctor can mention it, and never loaded.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)
# Names that are never data, whatever their extension (compared case-insensitively).
IGNORED_NAMES = frozenset({"__macosx", ".ipynb_checkpoints", "thumbs.db", "desktop.ini", ".ds_store"})
# Folder names accepted for each split; several spellings of the validation split are common.
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
SPLIT_ORDER = ("train", "val", "test")
MANIFEST_COLUMNS = ("split", "path", "label", "class", "sha256")

Sample = tuple[Path, int]


def is_ignored(name: str) -> bool:
    """True for hidden or system-generated names that must never be treated as data."""
    return name.startswith(".") or name.lower() in IGNORED_NAMES


def is_image_file(path: Path) -> bool:
    """True when the file name has one of IMAGE_EXTENSIONS (case-insensitive) and is not ignored."""
    return not is_ignored(path.name) and path.suffix.lower() in IMAGE_EXTENSIONS


@dataclass
class FolderScan:
    """What ``scan_folder`` found: class names, (path, label) samples per split and the layout.

    ``empty_classes`` maps a split to class folders holding no image; ``missing_classes`` maps a split
    to classes that other splits have but it lacks; ``skipped_files`` are non-image files inside the
    data, and ``ignored`` the hidden/system entries that were passed over. ``scan_folder`` raises on
    the first two; ``collect_folder`` keeps them for the doctor to report.
    """

    root: Path
    classes: list[str]
    splits: dict[str, list[Sample]]
    layout: Literal["splits", "flat"]
    split_dirs: dict[str, Path] = field(default_factory=dict)
    empty_classes: dict[str, list[str]] = field(default_factory=dict)
    missing_classes: dict[str, list[str]] = field(default_factory=dict)
    skipped_files: list[Path] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each split: ``{split: {class: count}}`` (every class listed)."""
        out = {}
        for split, samples in self.splits.items():
            per = dict.fromkeys(self.classes, 0)
            for _, label in samples:
                per[self.classes[label]] += 1
            out[split] = per
        return out

    @property
    def num_images(self) -> int:
        return sum(len(s) for s in self.splits.values())


def _subdirs(folder: Path, ignored: list[Path]) -> list[Path]:
    """Non-hidden subfolders of ``folder``, sorted by name; hidden ones are appended to ``ignored``."""
    out = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if is_ignored(entry.name):
            ignored.append(entry)
        elif entry.is_dir():
            out.append(entry)
    return out


def _images_under(folder: Path, scan_ignored: list[Path], skipped: list[Path]) -> list[Path]:
    """Image files anywhere below ``folder`` (nested folders included), sorted, hidden ones skipped."""
    found = []
    seen: set[tuple[int, int]] = set()  # (device, inode) of folders walked: a symlink loop stops here
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        here = Path(dirpath)
        st = here.stat()
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        keep = []
        for d in sorted(dirnames):
            if is_ignored(d):
                scan_ignored.append(here / d)
            else:
                keep.append(d)
        dirnames[:] = keep  # prune hidden folders from the walk
        for name in sorted(filenames):
            path = here / name
            if is_ignored(name):
                scan_ignored.append(path)
            elif path.suffix.lower() in IMAGE_EXTENSIONS:
                found.append(path)
            else:
                skipped.append(path)
    return sorted(found)


def _split_dirs(root: Path, top: list[Path]) -> dict[str, Path]:
    """Map split name -> folder when ``root`` uses the splits layout, else {} (flat layout)."""
    named = [d for d in top if d.name.lower() in SPLIT_ALIASES]
    if not named:
        return {}
    others = [d.name for d in top if d.name.lower() not in SPLIT_ALIASES]
    if others:
        raise CnnlabError(
            f"{root} mixes split folders ({', '.join(d.name for d in named)}) with other folders "
            f"({', '.join(others)}). Put every class folder inside train/, val/ or test/, or use one folder "
            "of class subfolders without split folders."
        )
    dirs: dict[str, Path] = {}
    for d in named:
        split = SPLIT_ALIASES[d.name.lower()]
        if split in dirs:
            raise CnnlabError(
                f"{root} has two folders for the {split} split ({dirs[split].name}/ and {d.name}/); keep one."
            )
        dirs[split] = d
    return {s: dirs[s] for s in SPLIT_ORDER if s in dirs}


def collect_folder(root: str | Path) -> FolderScan:
    """Walk ``root`` and record everything found, without raising for empty or mismatched classes.

    Raises CnnlabError only when nothing can be scanned: a missing path, a file instead of a folder,
    or no class folders at all. ``scan_folder`` adds the remaining checks; the doctor uses this one
    so it can report every problem at once.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise CnnlabError(f"data folder {root} does not exist. Check the path after 'folder:'.")
    if not root.is_dir():
        raise CnnlabError(
            f"{root} is a file, not a folder. Point folder:PATH at a folder of class subfolders "
            "(or with train/, val/, test/ inside)."
        )
    ignored: list[Path] = []
    skipped: list[Path] = []
    top = _subdirs(root, ignored)
    split_dirs = _split_dirs(root, top)
    layout: Literal["splits", "flat"] = "splits" if split_dirs else "flat"
    if not split_dirs:
        split_dirs = {"train": root}
    # Also note loose files next to the class folders: they belong to no class.
    skipped += [p for p in sorted(root.iterdir()) if p.is_file() and not is_ignored(p.name)]

    class_files: dict[str, dict[str, list[Path]]] = {}  # split -> class -> files
    for split, folder in split_dirs.items():
        if folder is not root:
            skipped += [p for p in sorted(folder.iterdir()) if p.is_file() and not is_ignored(p.name)]
        class_files[split] = {d.name: _images_under(d, ignored, skipped) for d in _subdirs(folder, ignored)}
    classes = sorted({c for per in class_files.values() for c in per})
    if not classes:
        where = " or ".join(f"{d}" for d in split_dirs.values())
        raise CnnlabError(
            f"no class folders found in {where}. Put the images in one subfolder per class, e.g. "
            f"{root}/cat/1.jpg and {root}/dog/2.jpg."
        )
    index = {c: i for i, c in enumerate(classes)}
    splits = {split: [(p, index[c]) for c in sorted(per) for p in per[c]] for split, per in class_files.items()}
    empty = {s: sorted(c for c, files in per.items() if not files) for s, per in class_files.items()}
    missing = {s: [c for c in classes if c not in per] for s, per in class_files.items()}
    return FolderScan(
        root=root,
        classes=classes,
        splits=splits,
        layout=layout,
        split_dirs=split_dirs,
        empty_classes={s: v for s, v in empty.items() if v},
        missing_classes={s: v for s, v in missing.items() if v},
        skipped_files=skipped,
        ignored=ignored,
    )


def check_scan(scan: FolderScan) -> None:
    """Raise CnnlabError for an empty class folder, a class-set mismatch, or no images at all."""
    if scan.empty_classes:
        parts = [f"{scan.split_dirs[s] / c}" for s, names in scan.empty_classes.items() for c in names]
        raise CnnlabError(
            f"empty class folder(s): {', '.join(parts)} hold no images (looked for "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}). Add images or remove the folder(s); "
            "'cnnlab data check' lists every problem."
        )
    if scan.missing_classes:
        parts = [f"{split}/ lacks {', '.join(repr(c) for c in names)}" for split, names in scan.missing_classes.items()]
        raise CnnlabError(
            f"the splits in {scan.root} do not have the same classes: {'; '.join(parts)}. Every split needs "
            "the same class folders (add the missing ones with images, or remove the extra ones elsewhere)."
        )
    if scan.num_images == 0:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise CnnlabError(f"no images found under {scan.root}. Supported extensions: {exts}.")


def scan_folder(root: str | Path) -> FolderScan:
    """Scan a ``folder:PATH`` dataset; raise CnnlabError naming the problem and the fix if it is unusable.

    Args:
        root: a folder with ``train/`` (and optionally ``val/``/``valid/``/``validation/``, ``test/``)
            class subfolders, or a folder of class subfolders (flat: everything lands in "train").

    Returns:
        FolderScan with sorted class names and ``(path, label)`` samples per split, sorted by path.
    """
    scan = collect_folder(root)
    drop_special_files(scan)
    check_scan(scan)
    return scan


def drop_special_files(scan: FolderScan) -> None:
    """Move FIFOs, sockets and devices named like images out of the splits into ``skipped_files``, as
    ``cnnlab data check`` skips them: opening a FIFO waits for a writer for ever."""
    for split, samples in scan.splits.items():
        keep = [(p, y) for p, y in samples if is_regular_file(p)]
        if len(keep) < len(samples):
            scan.skipped_files += sorted({p for p, _ in samples} - {p for p, _ in keep})
            scan.splits[split] = keep


# --- split manifest -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestRow:
    """One line of a split manifest; ``path`` is relative to the dataset root, '/'-separated."""

    split: str
    path: str
    label: int
    class_name: str
    sha256: str


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root``, '/'-separated, without resolving symlinks (class folders may be links)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()


def manifest_rows(scan: FolderScan, splits: Mapping[str, Iterable[Sample]] | None = None) -> list[ManifestRow]:
    """Rows for every sample of ``splits`` (default: ``scan.splits``), hashing each file once."""
    rows = []
    for split, samples in (splits if splits is not None else scan.splits).items():
        for path, label in samples:
            rel = _relative(Path(path), scan.root)
            rows.append(ManifestRow(split, rel, int(label), scan.classes[label], file_sha256(path)))
    return rows


def write_manifest(path: str | Path, rows: Iterable[ManifestRow | Mapping]) -> Path:
    """Write rows (ManifestRow or dicts with the MANIFEST_COLUMNS keys) to a CSV file; return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_write(path, "w", newline="", encoding="utf-8") as f:  # names escaped against formulas
        writer = tables.writer(f)
        writer.writerow(MANIFEST_COLUMNS)
        for r in rows:
            if isinstance(r, ManifestRow):
                writer.writerow([r.split, r.path, r.label, r.class_name, r.sha256])
            else:
                writer.writerow([r[c] for c in MANIFEST_COLUMNS])
    return path


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Read a split manifest; raise CnnlabError naming the file and line if it is malformed."""
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"split manifest {path} not found.")
    with open(path, newline="", encoding="utf-8") as f:
        reader = tables.DictReader(f)
        if tuple(reader.fieldnames or ()) != MANIFEST_COLUMNS:
            raise CnnlabError(
                f"{path} is not a split manifest: its header is {reader.fieldnames}, expected {list(MANIFEST_COLUMNS)}."
            )
        rows = []
        for line, rec in enumerate(reader, start=2):
            split = SPLIT_ALIASES.get(rec["split"])
            if split is None or not rec["label"].isdigit():
                raise CnnlabError(f"{path} line {line}: bad split {rec['split']!r} or label {rec['label']!r}.")
            rows.append(ManifestRow(split, rec["path"], int(rec["label"]), rec["class"], rec["sha256"]))
    return rows


def splits_from_manifest(
    root: str | Path, rows: Iterable[ManifestRow], classes: list[str] | None = None, verify: bool = True
) -> dict[str, list[Sample]]:
    """Rebuild ``{split: [(path, label)]}`` from manifest rows, checking the files are still the same.

    Raises CnnlabError listing (up to 10) files that are missing or whose SHA-256 changed, or rows whose
    label disagrees with ``classes``.
    """
    root = Path(root)
    out: dict[str, list[Sample]] = {}
    problems = []
    for r in rows:
        p = root / r.path
        if classes is not None and (r.label >= len(classes) or classes[r.label] != r.class_name):
            problems.append(f"{r.path}: label {r.label} is {r.class_name!r} in the manifest")
        elif not p.is_file():
            problems.append(f"{r.path}: missing")
        elif verify and file_sha256(p) != r.sha256:
            problems.append(f"{r.path}: content changed (sha256 differs)")
        out.setdefault(r.split, []).append((p, r.label))
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise CnnlabError(
            f"the split manifest does not match {root}: " + "; ".join(problems[:10]) + more + ". Restore the "
            "files, or run without the manifest to make a new split."
        )
    return {s: out[s] for s in SPLIT_ORDER if s in out}
