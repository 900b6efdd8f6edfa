"""Edit prompt sets and input images: an input image, its caption, an instruction and the caption
of the wanted result per row.

An edit record is a prompt record (``prompt`` = the edit instruction) plus ``input_caption``,
``output_caption``, ``input_path`` (a file path, or ``dataset[split][row]`` for hub data)
and, once the run knows its size, ``input_image``: the uint8 (3, H, W) image the pipeline
is given and the editing metrics compare against.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from evalrun.prompts import is_missing, load_hub_dataset, local_path
from evalrun.table_files import read_table
from evalrun.errors import ConfigError, EvalrunError
from evalrun.images import pixel_hash, to_rgb
from evalrun.paths import resolve_data_path

log = logging.getLogger(__name__)
COLUMN_KEYS = ("image_column", "input_caption_column", "edit_column", "output_caption_column")
RESIZE_MODES = ("stretch", "crop")


# ----------------------------------------------------------------------------- prompt sources
class HubImage:
    """A dataset row's image, decoded only when a run keeps the row (after filters and limit)."""

    def __init__(self, dataset, row: int, column: str) -> None:
        self.dataset, self.row, self.column = dataset, row, column

    def load(self) -> Image.Image:
        value = self.dataset[self.row][self.column]
        if isinstance(value, Image.Image):
            return value
        if isinstance(value, str):  # datasets that store file paths instead of images
            return Image.open(value)
        raise EvalrunError(f"row {self.row} column {self.column!r} is {type(value).__name__}, not an image "
                           f"(prompts.image_column)")


def _require_columns(columns: list[str], cfg: Any, where: str) -> dict[str, str]:
    names = {key: str(cfg.get(key)) for key in COLUMN_KEYS}
    for key, name in names.items():
        if name not in columns:
            raise ConfigError(f"{where} has no column {name!r} (prompts.{key}); its columns: {columns}")
    return names


def _text(value: Any, row: int, column: str, key: str, where: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
        raise ConfigError(f"{where} row {row}: empty {column!r} (prompts.{key})")
    return str(value)  # verbatim, as prompts are (evalrun.prompts)


def _edit_records(rows: list[dict[str, Any]], names: dict[str, str], where: str) -> list[dict[str, Any]]:
    records = []
    columns = [str(c) for c in (rows[0] if rows else {})]  # Category as prompt files read it: in any case
    found = "category" if "category" in columns else next((c for c in columns if c.lower() == "category"), None)
    for i, row in enumerate(rows):
        texts = {key: _text(row.get(names[key]), i, names[key], key, where) for key in COLUMN_KEYS[1:]}
        category = row.get(found) if found else None
        records.append({"prompt_id": i, "prompt": texts["edit_column"],
                        "category": None if is_missing(category) else str(category),
                        "challenge": None, "input_caption": texts["input_caption_column"],
                        "output_caption": texts["output_caption_column"]})
    return records


def _local_edits(cfg: Any, local: str) -> list[dict[str, Any]]:
    path = resolve_data_path(local)
    frame = read_table(path, cfg.get("encoding") or "utf-8")
    where = f"prompts.path={str(path)!r}"
    names = _require_columns([str(c) for c in frame.columns], cfg, where)
    rows = frame.to_dict("records")
    records = _edit_records(rows, names, where)
    for i, (row, record) in enumerate(zip(rows, records)):
        raw = _text(row.get(names["image_column"]), i, names["image_column"], "image_column", where)
        image_path = Path(raw).expanduser()
        image_path = image_path if image_path.is_absolute() else path.parent / image_path  # relative to the table
        if not image_path.is_file():
            raise EvalrunError(f"{where} row {i}: image file {str(image_path)!r} not found (column "
                               f"{names['image_column']!r}; relative paths are relative to the table's folder)")
        try:  # reads the header only: a non-image fails now, before any model loads
            with Image.open(image_path) as im:
                im.size
        except (UnidentifiedImageError, OSError) as exc:
            raise EvalrunError(f"{where} row {i}: {str(image_path)!r} is not a readable image ({exc})") from None
        record["input_path"] = str(image_path.resolve())
    return records


def _hub_edits(cfg: Any) -> list[dict[str, Any]]:
    hint = ("Offline? Save the set as CSV or JSONL (per row: an image file path, input caption, edit instruction, "
            "output caption) and set prompts.path=FILE; column names: prompts.image_column, "
            "prompts.input_caption_column, prompts.edit_column, prompts.output_caption_column")
    ds = load_hub_dataset(cfg.dataset, cfg.split, hint)
    where = f"dataset {cfg.dataset!r}"
    names = _require_columns(list(ds.column_names), cfg, where)
    # Text columns only: indexing the image column would decode every image now.
    texts = {key: list(ds[names[key]]) for key in COLUMN_KEYS[1:]}
    if "category" in ds.column_names:
        texts["category"] = list(ds["category"])
    rows = [{names.get(k, k): v[i] for k, v in texts.items()} for i in range(len(ds))]
    records = _edit_records(rows, names, where)
    for i, record in enumerate(records):
        record["input_path"] = f"{cfg.dataset}[{cfg.split}][{i}]"
        record["input_image"] = HubImage(ds, i, names["image_column"])
    return records


def load_edit_records(cfg: Any) -> list[dict[str, Any]]:
    """Prompt source ``edit_dataset``: a local CSV/TSV/JSONL (``prompts.path``) or a hub dataset."""
    for key in COLUMN_KEYS:
        if not cfg.get(key):
            raise ConfigError(f"prompts.{key} is empty; name the column that holds it")
    local = local_path(cfg)  # prompts.path, or the bundled set under debug=smoke
    return _local_edits(cfg, local) if local else _hub_edits(cfg)


# ----------------------------------------------------------------------------- input images
def fit_image(image: Image.Image, height: int, width: int, mode: str) -> Image.Image:
    """``stretch``: resize to width x height like the pipeline's own image processor
    (Lanczos, aspect not kept); ``crop``: keep the aspect ratio, centre-crop the excess."""
    if image.size == (width, height):
        return image
    if mode == "crop":
        return ImageOps.fit(image, (width, height), method=Image.LANCZOS)
    return image.resize((width, height), resample=Image.LANCZOS)


def load_input(record: dict[str, Any], height: int, width: int, mode: str) -> tuple[Any, dict[str, Any]]:
    """A record's input as a uint8 (3, H, W) tensor plus its original mode and size (result columns)."""
    import torch

    source = record.get("input_image")
    try:
        if isinstance(source, HubImage):
            image = source.load()
        elif isinstance(source, Image.Image):
            image = source
        else:
            with Image.open(record["input_path"]) as opened:
                opened.load()
                image = opened.copy()
        upright = to_rgb(image)  # EXIF rotation applied: the size as the image is seen (and the pipeline gets it)
        original = {"input_mode": image.mode, "input_width": upright.width, "input_height": upright.height}
        rgb = fit_image(upright, height, width, mode)
        # What the report pairs and groups edits by: the input's pixels, wherever its file is (runs of one table
        # from two folders are the same edits; two tables' first rows on other images are not).
        original["input_pixels"] = pixel_hash(np.asarray(upright, dtype=np.uint8))
    except (OSError, UnidentifiedImageError) as exc:
        raise EvalrunError(f"prompt {record['prompt_id']}: could not read input image {record['input_path']!r} "
                           f"({exc})") from None
    return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous(), original
