"""``python -m evalrun.cache {list,prune}``: what evalrun keeps in its cache, how big it is, and pruning it.

    python -m evalrun.cache list                              # each section: entries, size, oldest use
    python -m evalrun.cache prune --older-than 30             # everything unused for 30 days
    python -m evalrun.cache prune --section images --older-than 7 --dry-run

Sections (under ``$EVALRUN_CACHE``, default ``~/.cache/evalrun``; a store moved with ``paths.image_store`` or
``paths.feature_cache`` is named with ``--image-store`` / ``--feature-cache``):
``images`` (content-keyed generated images), ``features`` (per backbone, by pixel content),
``reference`` (reference features per extractor), ``tiny`` (random-weight smoke models),
``hashes`` (remembered file digests). Nothing here is needed for correctness: a pruned entry is
recomputed when a run needs it. Runs hard-link store images into their own folders, so pruning
the store frees the space only of images no run folder still links.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Iterator

SECTIONS = ("images", "features", "reference", "tiny", "hashes")


MOVABLE = {"images": "image_store", "features": "feature_cache"}  # section -> its paths.* key
# What the stores write (ImageStore.path, FeatureStore._path), with their temporary files: a moved store is
# named by hand, and a wrong folder must lose nothing else.
STORE_FILES = {"images": re.compile(r"[0-9a-f]{2}/[0-9a-f]{8,}\.png(\.[\w.]+\.tmp)?"),
               "features": re.compile(r"[^/]+/[0-9a-f]{2}/[0-9a-f]{8,}(\.npz|\.[\w.]+\.tmp\.npz)")}


def section_items(root: Path, section: str, moved: dict[str, Path] | None = None) -> Iterator[Path]:
    """The prunable units of a section: a file (images, features chunks, hashes) or a folder. ``moved``:
    sections kept elsewhere (``paths.image_store``, ``paths.feature_cache``), section -> folder."""
    if section in (moved or {}):  # a folder named on the command line: only what the store itself writes there
        base, shape = moved[section], STORE_FILES[section]
        if base.is_dir():
            yield from (p for p in base.rglob("*") if p.is_file() and shape.fullmatch(p.relative_to(base).as_posix()))
    elif section == "tiny":
        yield from (p for p in root.glob("evalrun--tiny-*") if p.is_dir())
    elif section == "reference":
        yield from (p for p in (root / "reference").glob("*") if p.is_dir() and (p / "meta.json").exists())
    elif section in ("images", "features", "hashes"):
        base = root / section
        if base.is_dir():
            yield from (p for p in base.rglob("*") if p.is_file())


def measure(path: Path) -> tuple[int, float]:
    """(bytes, last use) of an entry. Last use: when it was last written or read (atime where the file
    system keeps it); for a folder (a reference entry, a tiny model), its newest file's, since a run reads
    the files, and listing the folder (as this does) would refresh the folder's own access time."""
    st = path.stat()
    if not path.is_dir():
        return st.st_size, max(st.st_mtime, st.st_atime)
    size, used = 0, st.st_mtime  # a folder's mtime changes only when files come or go
    for item in path.rglob("*"):
        if item.is_file():
            found = item.stat()
            size, used = size + found.st_size, max(used, found.st_mtime, found.st_atime)
    return size, used


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def listing(root: Path, moved: dict[str, Path] | None = None) -> list[tuple[str, int, int, float | None]]:
    """(section, entries, bytes, oldest last use) for each section."""
    rows = []
    for section in SECTIONS:
        measured = []
        for item in section_items(root, section, moved):
            try:
                measured.append(measure(item))
            except FileNotFoundError:  # gone since it was listed
                continue
        rows.append((section, len(measured), sum(size for size, _ in measured),
                     min((used for _, used in measured), default=None)))
    return rows


def prune(root: Path, sections: list[str], older_than_days: float, dry_run: bool = False,
          moved: dict[str, Path] | None = None) -> tuple[int, int]:
    """Remove entries of ``sections`` unused for ``older_than_days``; returns (entries, bytes) removed."""
    cutoff = time.time() - older_than_days * 86400
    count = freed = 0
    for section in sections:
        for item in list(section_items(root, section, moved)):
            try:
                size, used = measure(item)
            except FileNotFoundError:  # gone since it was listed (a run's temporary file renamed into place)
                continue
            if used >= cutoff:
                continue
            if not dry_run:
                shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
            count, freed = count + 1, freed + size
    return count, freed


def days(text: str) -> float:
    """``--older-than``: a number of days, 0 or more (a negative or NaN cutoff would select everything)."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days (0 or more; 0 prunes every entry)")
    return value


def main(argv: list[str] | None = None) -> int:
    from evalrun.paths import cache_dir

    parser = argparse.ArgumentParser(prog="python -m evalrun.cache", description=__doc__.splitlines()[0],
                                     epilog="\n".join(__doc__.splitlines()[2:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $EVALRUN_CACHE or ~/.cache/evalrun")
    sub = parser.add_subparsers(dest="command", required=True)
    shown = sub.add_parser("list", help="entries and size per section")
    cut = sub.add_parser("prune", help="remove entries not used for a while")
    for where in (parser, shown, cut):  # also after the command; SUPPRESS: not given there, the first one stands
        hidden = where is not parser
        if hidden:
            where.add_argument("--cache-dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        for section, key in MOVABLE.items():
            where.add_argument(f"--{key.replace('_', '-')}", type=Path, default=argparse.SUPPRESS if hidden else None,
                               help=argparse.SUPPRESS if hidden else f"the {section} section's folder where "
                               f"paths.{key} moved it (default: under the cache)")
    cut.add_argument("--section", action="append", choices=SECTIONS, help="repeatable (default: all)")
    cut.add_argument("--older-than", type=days, required=True, metavar="DAYS", help="unused for this many days (0: all)")
    cut.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    args = parser.parse_args(argv)
    root = cache_dir(args.cache_dir)
    if root.exists() and not root.is_dir():
        parser.error(f"{'--cache-dir' if args.cache_dir else '$EVALRUN_CACHE'} {root} is a file, not a cache folder")
    moved = {section: getattr(args, key).expanduser() for section, key in MOVABLE.items() if getattr(args, key)}
    for section, folder in moved.items():
        if not folder.is_dir():
            parser.error(f"--{MOVABLE[section].replace('_', '-')} {folder} is not a folder (where paths."
                         f"{MOVABLE[section]} keeps the {section} section)")
    if not root.is_dir() and not moved:
        print(f"no cache at {root}")
        return 0
    if args.command == "list":
        print(f"cache: {root}" + "".join(f"; {section}: {folder}" for section, folder in moved.items()))
        total = 0
        for section, n, size, oldest in listing(root, moved):
            total += size
            age = f", oldest use {(time.time() - oldest) / 86400:.1f} days ago" if oldest else ""
            print(f"  {section:10s} {n:8d} entries  {human(size):>10s}{age}")
        print(f"  {'total':10s} {'':8s}          {human(total):>10s}")
        return 0
    count, freed = prune(root, args.section or list(SECTIONS), args.older_than, args.dry_run, moved)
    print(f"{'would remove' if args.dry_run else 'removed'} {count} entries, {human(freed)} from {root}"
          + "".join(f" and {folder}" for folder in moved.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
