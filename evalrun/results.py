"""Where results are written: atomic CSV/JSON writes, run locks, and the provenance of every number."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)
RUN_FILE = "run.json"
PACKAGES = ("evalrun", "torch", "torchvision", "diffusers", "transformers", "accelerate", "torchmetrics",
            "torch-fidelity", "open-clip-torch", "numpy", "scipy", "pandas", "hydra-core", "pillow", "datasets",
            "huggingface-hub", "safetensors")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def shared_mode(path: str | os.PathLike, directory: bool = False) -> None:
    """Give a file (0666) or folder (0777) the permissions the umask allows: ``mkstemp``/``mkdtemp``
    make 0600/0700, which would hide a lab's shared results from colleagues."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same directory and ``os.replace``: readers never see half a file."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new file beside ``path`` (``mkstemp``'s exclusive create), made 0666 less the umask directly,
    as a plain ``open`` would make ``path``: a run writes one per image, and ``mkstemp``'s 0600
    followed by a ``chmod`` (and a ``mkdir`` of a folder that is there) were a third of each write."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        tmp = f"{path}.{os.urandom(6).hex()}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
    raise FileExistsError(f"no free temporary name beside {path}")


def write_csv(frame, path: Path) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


def write_rows_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """``pd.DataFrame(rows).to_csv(index=False)``, byte for byte, without pandas (a run writes three of
    these, and building the frames cost more than the rest of its bookkeeping). Each column is written
    as pandas would type it: text and mixed columns cell by cell, one numpy float type as its shortest
    repr, numbers mixed with floats or gaps as float64; None and NaN empty."""
    import csv
    import io

    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    formats = {c: _column_format([row.get(c) for row in rows]) for c in columns}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([formats[c](row.get(c)) for c in columns])
    atomic_write_text(path, out.getvalue())


# pandas.read_csv's defaults, for the cells read_row_csv types itself (anything else goes to pandas).
_NA_CELLS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                       "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
_BOOL_CELLS = {"True": True, "TRUE": True, "true": True, "False": False, "FALSE": False, "false": False}


def read_row_csv(path: Path) -> dict[str, Any]:
    """The first row of a CSV as ``pd.read_csv(path).iloc[0]`` gives it, as plain Python values (a summary
    reads one such row per run, after every job: pandas' parser cost more than the rest of that read). A
    one-row file of plain cells (the runs' own metrics.csv) is typed here as pandas types it: NA spellings
    as NaN, integers, floats, pandas' bool spellings, text; any other file, or a cell whose typing is not
    plain, is read by pandas itself."""
    import csv

    text = Path(path).read_text(encoding="utf-8")
    rows = list(csv.reader(text.splitlines(keepends=True)))
    plain = len(rows) == 2 and len(rows[0]) == len(rows[1]) == len(set(rows[0])) and all(rows[0])
    row = {name: _typed_cell(cell) for name, cell in zip(*rows)} if plain else {}
    if not plain or any(value is _UNSURE for value in row.values()):
        import pandas as pd

        found = pd.read_csv(path).iloc[0].to_dict()
        return {k: v.item() if hasattr(v, "item") else v for k, v in found.items()}
    return row


_UNSURE = object()
_INT = r"[+-]?[0-9]+"
_FLOAT = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|Inf|INF|infinity|Infinity)"


def _typed_cell(cell: str) -> Any:
    if cell in _NA_CELLS:
        return float("nan")
    if cell in _BOOL_CELLS:
        return _BOOL_CELLS[cell]
    if re.fullmatch(_INT, cell):  # beyond int64 pandas reads uint64 or text
        return int(cell) if len(cell.lstrip("+-")) <= 18 else _UNSURE
    if re.fullmatch(_FLOAT, cell):
        return float(cell)
    if cell != cell.strip() or cell[:1].isdigit() or cell[:1] in "+-.":  # spaced or number-like: pandas decides
        return _UNSURE
    return cell


def _is_missing(value: Any) -> bool:
    import numbers

    return value is None or (isinstance(value, numbers.Real) and value != value)  # None or NaN (numpy's too)


def _column_format(values: list[Any]):
    """How pandas writes a column holding ``values`` (the dtype it infers, then its text)."""
    import numbers

    present = [v for v in values if v is not None]
    types = {type(v) for v in present}
    is_bool = [type(v).__name__ in ("bool", "bool_") for v in present]
    numeric = all(isinstance(v, numbers.Real) for v in present) and not any(is_bool)
    as_text = (lambda v: "" if _is_missing(v) else str(v))
    if not numeric or not present:  # text, bools, mixtures: object (or bool) columns, cell by cell
        return as_text
    if len(present) == len(values) and len(types) == 1:  # one type, no gaps: kept as that dtype
        only = next(iter(types))
        if issubclass(only, numbers.Integral):
            return lambda v: str(int(v))
        return as_text  # numpy float types print their own shortest repr (float32: 0.1, not 0.100000001)
    if all(isinstance(v, numbers.Integral) for v in present) and len(present) == len(values):
        return lambda v: str(int(v))  # ints of several types: int64
    return lambda v: "" if _is_missing(v) else repr(float(v))  # float64


def write_json(data: Any, path: Path) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """A record file's JSON object; ValueError for anything else (a run.json edited into a list is no record)."""
    found = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(found, dict):
        raise ValueError(f"{path} holds a JSON {type(found).__name__}, not an object")
    return found


@functools.lru_cache(maxsize=1)  # installed versions do not change within a process
def _versions() -> tuple[tuple[str, str], ...]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return tuple(versions.items())


def library_versions() -> dict[str, str]:
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """evalrun's git commit when it runs from a checkout (None from an installed wheel)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else None


def environment(device: Any) -> dict[str, Any]:
    """The machine a number was computed on: device, GPU name and count, CUDA and cuDNN versions."""
    import torch

    env: dict[str, Any] = {"device": str(device), "platform": platform.platform(), "evalrun_git": git_commit(),
                           "cuda": torch.version.cuda, "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        env.update(gpu_count=torch.cuda.device_count(), gpu_name=torch.cuda.get_device_name(torch.device(device)),
                   cudnn=torch.backends.cudnn.version(), cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
    return env


def finished_run(run_dir: Path, run_key: str) -> dict[str, Any] | None:
    """The run record if this directory already holds a complete run with the same key."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists() or not (Path(run_dir) / "metrics.csv").exists():
        return None
    try:
        record = read_json(path)
    except ValueError:
        return None
    return record if record.get("status") == "complete" and record.get("run_key") == run_key else None


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` while a run computes: a second process writing the same run (two sweeps
    into one directory) waits, then finds the finished run. ``flock`` is released when its holder
    dies, so a killed run never leaves a stale lock."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "a") as fh:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): concurrent writers may compute twice, never corrupt
            yield
            return
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another process is computing %s; waiting for it", run_dir)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def clean_stale_partials(folder: Path, older_than_s: float = 3600.0) -> int:
    """Remove half-built cache folders (``*.partial.*``) and temp files a killed process left in ``folder``;
    only ones untouched for ``older_than_s``, so a build under way in another process is never removed."""
    import shutil
    import time

    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    for item in folder.iterdir():
        if (".partial." in item.name or item.name.endswith(".tmp")) and item.stat().st_mtime < cutoff:
            shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
            removed += 1
    return removed
