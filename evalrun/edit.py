"""Image editing (InstructPix2Pix, img2img): edit prompt sets, the ``edit`` task call and its grid.

An edit record is a prompt record (``prompt`` = the edit instruction) plus ``input_caption``,
``output_caption``, ``input_path`` (a file path, or ``dataset[split][row]`` for hub data)
and, once the run knows its size, ``input_image``: the uint8 (3, H, W) image the pipeline
is given and the editing metrics compare against. Registering here keeps run.py generic:
``run.PREPARE_RECORDS["edit"]`` loads and resizes the inputs after the pipeline is known.
"""

from __future__ import annotations

import inspect
import logging
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from evalrun import generate, prompts
from evalrun.errors import ConfigError, EvalrunError

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parent.parent
COLUMN_KEYS = ("image_column", "input_caption_column", "edit_column", "output_caption_column")
RECORD_TEXTS = ("prompt", "input_caption", "output_caption")  # what model.prompt_key may name
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


def _table_path(path: str) -> Path:
    """A relative path is looked up in the current directory, then in the evalrun checkout
    (so the bundled ``data/edit_demo`` set works from any directory)."""
    p = Path(str(path)).expanduser()
    if not p.is_absolute() and not p.exists() and (REPO_ROOT / p).exists():
        return REPO_ROOT / p
    return p


def _require_columns(columns: list[str], cfg: DictConfig, where: str) -> dict[str, str]:
    names = {key: str(cfg.get(key)) for key in COLUMN_KEYS}
    for key, name in names.items():
        if name not in columns:
            raise ConfigError(f"{where} has no column {name!r} (prompts.{key}); its columns: {columns}")
    return names


def _text(value: Any, row: int, column: str, key: str, where: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
        raise ConfigError(f"{where} row {row}: empty {column!r} (prompts.{key})")
    return str(value).strip()


def _edit_records(rows: list[dict[str, Any]], names: dict[str, str], where: str) -> list[dict[str, Any]]:
    records = []
    for i, row in enumerate(rows):
        texts = {key: _text(row.get(names[key]), i, names[key], key, where) for key in COLUMN_KEYS[1:]}
        category = row.get("category")
        records.append({"prompt_id": i, "prompt": texts["edit_column"],
                        "category": None if category is None or pd.isna(category) else str(category),
                        "challenge": None, "input_caption": texts["input_caption_column"],
                        "output_caption": texts["output_caption_column"]})
    return records


def _local_edits(cfg: DictConfig) -> list[dict[str, Any]]:
    path = _table_path(cfg.path)
    frame = prompts.read_table(path)
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


def _hub_edits(cfg: DictConfig) -> list[dict[str, Any]]:
    hint = ("Offline? Save the set as CSV or JSONL (per row: an image file path, input caption, edit instruction, "
            "output caption) and set prompts.path=FILE; column names: prompts.image_column, "
            "prompts.input_caption_column, prompts.edit_column, prompts.output_caption_column")
    ds = prompts.load_hub_dataset(cfg.dataset, cfg.split, hint)
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


def load_edit_records(cfg: DictConfig) -> list[dict[str, Any]]:
    """Prompt source ``edit_dataset``: a local CSV/TSV/JSONL (``prompts.path``) or a hub dataset."""
    for key in COLUMN_KEYS:
        if not cfg.get(key):
            raise ConfigError(f"prompts.{key} is empty; name the column that holds it")
    return _local_edits(cfg) if cfg.get("path") else _hub_edits(cfg)


# ----------------------------------------------------------------------------- input images
def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB: EXIF rotation applied, transparency composited on white (plain
    ``convert("RGB")`` would show whatever colour hides under transparent pixels), 16/32-bit
    grayscale scaled to 8 bits rather than clipped."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        image = Image.fromarray((arr.clip(0, top) / top * 255).round().astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def fit_image(image: Image.Image, height: int, width: int, mode: str) -> Image.Image:
    """``stretch``: resize to width x height like the pipeline's own image processor
    (Lanczos, aspect not kept); ``crop``: keep the aspect ratio, centre-crop the excess."""
    if image.size == (width, height):
        return image
    if mode == "crop":
        return ImageOps.fit(image, (width, height), method=Image.LANCZOS)
    return image.resize((width, height), resample=Image.LANCZOS)


def load_input(record: dict[str, Any], height: int, width: int, mode: str) -> tuple[torch.Tensor, dict[str, Any]]:
    """A record's input as uint8 (3, H, W) plus its original mode and size (result columns)."""
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
        original = {"input_mode": image.mode, "input_width": image.width, "input_height": image.height}
        rgb = fit_image(to_rgb(image), height, width, mode)
    except (OSError, UnidentifiedImageError) as exc:
        raise EvalrunError(f"prompt {record['prompt_id']}: could not read input image {record['input_path']!r} "
                           f"({exc})") from None
    return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous(), original


# ----------------------------------------------------------------------------- the task
def edit_style(pipe) -> str:
    """``pix2pix`` (takes image_guidance_scale) or ``img2img`` (takes strength), from the call signature."""
    params = inspect.signature(pipe.__call__).parameters
    if "image" not in params:
        raise EvalrunError(f"{type(pipe).__name__} takes no input image: it is not an editing pipeline (model.task=edit)")
    if "image_guidance_scale" in params:
        return "pix2pix"
    if "strength" in params:
        return "img2img"
    raise EvalrunError(f"{type(pipe).__name__} has neither image_guidance_scale nor strength; evalrun's edit task "
                       f"supports InstructPix2Pix- and img2img-style pipelines")


def _check_knobs(style: str, cfg: DictConfig, pipe) -> None:
    """The knob a pipeline uses must be set; one it ignores must not be, or its result column would lie."""
    used, unused = ("image_guidance_scale", "strength") if style == "pix2pix" else ("strength", "image_guidance_scale")
    value = cfg.get(used)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{used} must be a number >= 0 for {type(pipe).__name__}, got {value!r} "
                          f"(set {used}=... or model.default_{used})")
    if used == "strength" and not 0 < value <= 1:
        raise ConfigError(f"strength must be in (0, 1], got {value!r}")
    if cfg.get(unused) is not None:
        raise ConfigError(f"{unused}={cfg.get(unused)!r} has no effect on {type(pipe).__name__}; remove it")


def prepare_edit_records(pipe, records: list[dict[str, Any]], cfg: DictConfig) -> list[dict[str, Any]]:
    """``PREPARE_RECORDS["edit"]``: check the knobs, pick the pipeline's prompt, load and size the inputs."""
    if not records or "input_path" not in records[0]:
        raise ConfigError(f"model.task=edit needs an edit prompt set (an input image and captions per row), not "
                          f"prompts={cfg.prompts.get('name')!r}; use prompts=instructpix2pix_demo or prompts=edit_demo")
    style = edit_style(pipe)
    _check_knobs(style, cfg, pipe)
    # Pix2pix follows the instruction; img2img users describe the wanted result (the output caption).
    prompt_key = cfg.model.get("prompt_key") or ("prompt" if style == "pix2pix" else "output_caption")
    if prompt_key not in RECORD_TEXTS:
        raise ConfigError(f"model.prompt_key={prompt_key!r} is not valid; use one of {', '.join(RECORD_TEXTS)}")
    mode = cfg.prompts.get("resize") or "stretch"
    if mode not in RESIZE_MODES:
        raise ConfigError(f"prompts.resize={mode!r} is not valid; use one of {', '.join(RESIZE_MODES)}")
    height, width = int(cfg.height), int(cfg.width)
    out = []
    for record in records:
        image, original = load_input(record, height, width, mode)
        out.append({**record, **original, "pipeline_prompt": record[prompt_key], "input_image": image})
    log.info("edit inputs: %d images sized to %dx%d (%s); pipeline prompt: %s", len(out), width, height, mode, prompt_key)
    return out


def edit_call(pipe, jobs: list[generate.ImageJob], params: dict[str, Any]) -> dict[str, Any]:
    """``TASK_CALLS["edit"]``: a batch of edit jobs -> the pipeline's keyword arguments."""
    kwargs = {
        "prompt": [j.record["pipeline_prompt"] for j in jobs],
        "image": [Image.fromarray(j.record["input_image"].permute(1, 2, 0).numpy()) for j in jobs],
        "num_inference_steps": params["steps"], "guidance_scale": params["guidance_scale"],
    }
    if edit_style(pipe) == "pix2pix":
        kwargs["image_guidance_scale"] = params["image_guidance_scale"]
    else:
        kwargs["strength"] = params["strength"]
    return kwargs


# ----------------------------------------------------------------------------- grid
def make_edit_grid(images: list[np.ndarray], jobs: list[generate.ImageJob], cfg: DictConfig) -> Image.Image:
    """One row per input: input | edited image(s), the instruction written underneath.
    Tiles of small images are enlarged (nearest) to at least 128 px so the text fits."""
    rows: dict[int, list[int]] = {}
    for n, job in enumerate(jobs):
        rows.setdefault(job.prompt_index, []).append(n)
    per_row = 1 + max(len(v) for v in rows.values())
    keep = list(rows)[:max(1, int(cfg.grid_max_images) // per_row)]
    h, w = images[0].shape[:2]
    scale = max(1, -(-128 // min(h, w)))
    th, tw = h * scale, w * scale
    font = ImageFont.load_default(size=12)
    chars = max(8, int(per_row * tw / max(1.0, font.getlength("x"))))
    texts = [textwrap.wrap(f"{jobs[rows[p][0]].record['prompt']}", chars)[:3] for p in keep]
    band = 4 + 15 * max(len(t) for t in texts)
    grid = Image.new("RGB", (per_row * tw, len(keep) * (th + band)), "white")
    draw = ImageDraw.Draw(grid)
    for r, p in enumerate(keep):
        y = r * (th + band)
        first = jobs[rows[p][0]].record["input_image"].permute(1, 2, 0).numpy()
        tiles = [first] + [images[n] for n in rows[p]]
        for c, tile in enumerate(tiles):
            grid.paste(Image.fromarray(tile).resize((tw, th), Image.NEAREST), (c * tw, y))
        for k, line in enumerate(texts[r]):
            draw.text((3, y + th + 2 + 15 * k), line, fill="black", font=font)
    return grid


generate.register_task("edit", edit_call)
prompts.register_source("edit_dataset", load_edit_records)


def _register_run_hooks() -> None:
    # run.py imports this module at its end, so run is fully defined by then.
    from evalrun import run

    run.PREPARE_RECORDS["edit"] = prepare_edit_records
    run.GRID_MAKERS["edit"] = make_edit_grid


_register_run_hooks()
