"""Where evalrun keeps things on disk: the packaged config and data, and the cache root.

The cache (``$EVALRUN_CACHE``, default ``~/.cache/evalrun``; the ``paths`` config group sets it
for runs) holds tiny smoke models, reference features, the content-keyed image store and file
hashes. Nothing in it is needed for correctness: delete it and it is rebuilt.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CONF_DIR = PACKAGE_DIR / "conf"
DATA_DIR = PACKAGE_DIR / "data"


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache root: ``override`` if given, else ``$EVALRUN_CACHE``, else ``~/.cache/evalrun``."""
    root = override or os.environ.get("EVALRUN_CACHE") or Path.home() / ".cache" / "evalrun"
    return Path(root).expanduser()


def resolve_data_path(path: str | os.PathLike) -> Path:
    """A relative path is looked up in the current directory, then among evalrun's packaged data
    (so ``prompts=edit_demo``'s ``data/edit_demo/edits.csv`` works from any directory and from a wheel)."""
    p = Path(str(path)).expanduser()
    if p.is_absolute() or p.exists():
        return p
    for base in (PACKAGE_DIR, DATA_DIR):
        if (base / p).exists():
            return base / p
    return p
