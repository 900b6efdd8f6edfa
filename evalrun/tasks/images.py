"""Scoring images made elsewhere (``model=images``): a folder, or a CSV/JSONL listing image files.

Nothing is generated: each listed image is read (any size, mode and common format; converted to
RGB as reference images are) and scored like a generated one, so every metric, the summary, the
report and the gallery work on images from other code, another tool or an image API. A table
may give, per image, a prompt, category, challenge, seed and, for edits, the input image and
both captions (then the edit metrics score the existing (input, edited) pairs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalrun.errors import ConfigError, EvalrunError
from evalrun.images import IMAGE_SUFFIXES
from evalrun.tasks.base import Task

OPTIONAL = ("prompt", "category", "challenge", "seed", "input_caption", "output_caption")


def _files(folder: Path) -> list[Path]:
    """The folder's images, each opened (its header only) before any model loads: a file that is no image (a
    macOS ``._x.png``, a cut download) is named now, not after the metric models have loaded."""
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"model.path={str(folder)!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    unreadable = []
    for path in files:
        try:
            with Image.open(path):
                pass
        except (OSError, UnidentifiedImageError, SyntaxError):
            unreadable.append(path)
    if unreadable:
        raise ConfigError(f"model.path={str(folder)!r}: {len(unreadable)} file(s) are not readable images, the first "
                          f"{str(unreadable[0])!r}; remove them (or list the images to score in a table)")
    return files


def _run_records(folder: Path) -> dict[str, dict[str, Any]]:
    """A finished evalrun run's ``images/`` folder: each file's prompt, prompt id and image index from the
    run's ``images.csv`` (its file names are image ids, not captions), so the images of one prompt are
    grouped as in the run; an edit run's captions and input images too, so the edit metrics score its
    pairs. Any other folder: nothing (file names become prompts)."""
    table = folder.parent / "images.csv"
    if folder.name != "images" or not table.is_file():
        return {}
    import pandas as pd

    try:
        texts = ("prompt", "category", "challenge", "input_caption", "output_caption", "path", "input_path")
        rows = pd.read_csv(table, dtype=dict.fromkeys(texts, str), keep_default_na=False)  # category 007 stays 007
    except (OSError, ValueError):
        return {}
    if not {"path", "prompt"} <= set(rows.columns):
        return {}
    ids = [c for c in ("prompt_id", "image_index") if c in rows.columns
           and pd.api.types.is_integer_dtype(rows[c])]
    texts = [c for c in ("category", "challenge", "input_caption", "output_caption") if c in rows.columns]
    found = {}
    for i, (p, t) in enumerate(zip(rows["path"], rows["prompt"])):
        record = {"prompt": str(t), **{c: int(rows[c].iloc[i]) for c in ids},
                  **{c: str(rows[c].iloc[i]) for c in texts if str(rows[c].iloc[i])}}
        source = str(rows["input_path"].iloc[i]) if "input_path" in rows.columns else ""
        if source and Path(source).is_file():  # an edit's input, where the run read it
            record["input_path"] = str(Path(source).resolve())
        found[Path(p).name] = record
    return found


def grouped_by_prompt(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each record's ``prompt_id`` and ``image_index`` as a generated run has them (evalrun.jobs.PromptNumbering),
    so the images of one prompt are grouped (diversity) and paired (reports) as a run's
    ``num_images_per_prompt`` images are. Records that all carry both (a run's images) keep them."""
    from evalrun.jobs import PromptNumbering

    if all("prompt_id" in r and "image_index" in r for r in records):
        return records
    number = PromptNumbering()
    return [number({k: v for k, v in r.items() if k not in ("prompt_id", "image_index")}) for r in records]


def _seed(value: Any, table: Path, row: int, column: str) -> int:
    """A table's seed cell as an int; 1.7 or "abc" is refused, not cut to 1 or a traceback."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number.is_integer() or number < 0:
        raise ConfigError(f"model.path={str(table)!r} row {row}: {column}={value!r} is not a non-negative integer seed")
    return int(number)


def _table_records(table: Path, model: Any) -> list[dict[str, Any]]:
    from evalrun.prompts import is_missing
    from evalrun.table_files import read_table

    frame = read_table(table, model.get("encoding") or "utf-8", group="model")
    columns = {str(c) for c in frame.columns}
    column = str(model.get("image_column") or "image")
    if column not in columns:
        raise ConfigError(f"model.path={str(table)!r} has no column {column!r} (model.image_column); columns: {sorted(columns)}")
    records = []
    for i, row in enumerate(frame.to_dict("records")):
        if is_missing(row.get(column)):
            raise ConfigError(f"model.path={str(table)!r} row {i}: empty {column!r} (model.image_column)")
        path = Path(str(row[column])).expanduser()
        path = path if path.is_absolute() else table.parent / path  # relative to the table, like edit sets
        if not path.is_file():
            raise ConfigError(f"model.path={str(table)!r} row {i}: image file {str(path)!r} not found")
        _check_readable(path, table, i, column)
        record = {"image_path": str(path.resolve())}
        for key in OPTIONAL:
            name = str(model.get(f"{key}_column") or key)
            if name in columns and not is_missing(row.get(name)):
                record[key] = _seed(row[name], table, i, name) if key == "seed" else str(row[name])
        input_name = str(model.get("input_image_column") or "input_image")
        if input_name in columns and not is_missing(row.get(input_name)):
            source = Path(str(row[input_name])).expanduser()
            source = source if source.is_absolute() else table.parent / source
            if not source.is_file():
                raise ConfigError(f"model.path={str(table)!r} row {i}: input image file {str(source)!r} not found "
                                  f"({input_name!r}, model.input_image_column)")
            _check_readable(source, table, i, input_name)
            record["input_path"] = str(source.resolve())
        records.append(record)
    return records


def _check_readable(path: Path, table: Path, row: int, column: str) -> None:
    """An image a table names, opened (its header only) before any model loads: a bad file is named with its
    row and column now, not after the metric models have loaded or halfway through scoring."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            pass
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise ConfigError(f"model.path={str(table)!r} row {row}: {column!r} file {str(path)!r} is not a readable "
                          f"image ({exc}); fix or remove the row") from None


def read_rgb(path: str | Path):
    """Any image file -> uint8 (H, W, 3), as reference images are read (EXIF rotation, alpha on white)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from evalrun.images import to_rgb

    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(to_rgb(im), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise EvalrunError(f"image {str(path)!r} cannot be read ({exc}); fix or remove it") from None


class ExistingImages(Task):
    name = "images"
    knobs: dict = {}
    more_images = "add images to model.path"
    generates = False
    provides = ("text", "input_image")  # when the table has them; a metric finding none says so

    def read_image(self, job: Any):
        """The job's image as uint8 (H, W, 3) and the file it came from."""
        return read_rgb(job.record["image_path"]), Path(job.record["image_path"])

    def validate(self, cfg: Any) -> None:
        for key, meaning in (("image_guidance_scale", "edit"), ("strength", "edit"), ("num_images", "unconditional")):
            if cfg.get(key) is not None:
                raise ConfigError(f"{key}={cfg.get(key)!r} has no effect when scoring existing images (model=images); remove it")
        if cfg.model.get("path") in (None, "", "???"):  # get: an unset (???) value reads as None
            raise ConfigError("model=images needs model.path=FOLDER (or a .csv/.jsonl listing image files)")
        path = Path(str(cfg.model.path)).expanduser()
        if not path.exists():
            raise ConfigError(f"model.path={str(cfg.model.path)!r} does not exist; give a folder of images or a "
                              f".csv/.jsonl with an image column")

    def check_pipeline(self, pipeline_cls: type, cfg: Any) -> None:
        """No pipeline: nothing to check."""

    def column_keys(self, cfg: Any) -> list[str]:
        return ["seed"]

    def load_records(self, cfg: Any) -> list[dict[str, Any]]:
        path = Path(str(cfg.model.path)).expanduser()
        if path.is_dir():
            known = _run_records(path)
            records = [{"image_path": str(p.resolve()), "prompt": p.stem.replace("_", " "), **known.get(p.name, {})}
                       for p in _files(path)]
        else:
            records = _table_records(path, cfg.model)
        return grouped_by_prompt(records)

    def jobs(self, records: list[dict[str, Any]], per_record: int, seed: int) -> list:
        """One job per listed image, with the image index its prompt gave it (``grouped_by_prompt``)."""
        from evalrun.jobs import ImageJob, generator_seed

        return [ImageJob(n, record, int(record["image_index"]),
                         generator_seed(seed, record["prompt_id"], int(record["image_index"])))
                for n, record in enumerate(records)]

    def images_per_record(self, cfg: Any) -> int:
        return 1

    def prepare(self, pipeline: Any, records: list[dict[str, Any]], cfg: Any) -> list[dict[str, Any]]:
        """Edit pairs: load each input image for the edit metrics, at its own size: CLIP's processor takes
        each image as it is (as the guide scores pairs); stretched to the edited image's size, an input of
        another aspect ratio would be seen distorted."""
        import torch

        out = []
        for record in records:
            if "input_path" in record:
                from evalrun.images import pixel_hash

                rgb = read_rgb(record["input_path"])
                record = {**record, "input_image": torch.from_numpy(rgb.copy()).permute(2, 0, 1),
                          "input_pixels": pixel_hash(rgb)}  # as an edit run records them (tasks/edit_data.py)
            out.append(record)
        return out

    def inputs(self, pipe: Any, jobs: list) -> dict[str, Any]:
        raise EvalrunError("model=images reads existing images; it has no pipeline to call")

    def grid(self, cfg: Any, jobs: list):
        from evalrun.grid import GridBuilder

        return GridBuilder.by_prompt(jobs, int(cfg.grid_max_images), label=lambda rec: [str(rec.get("prompt") or "")])
