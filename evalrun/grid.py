"""``grid.png``: the run's images at a glance, one labelled row per prompt (or input, or class).

The builder decides from the job list which images it will draw, keeps only those as they
stream past, and renders rows of tiles with their text beside them: the prompt for
text-to-image, the instruction and both captions (plus the input image as the first tile)
for edits, the class word for class-conditional runs. Unconditional samples have no text
and fill plain rows. Tiles are drawn at their own size, enlarged (nearest, by a whole factor) only
when a row's text needs more height: a sweep writes one grid per run, and enlarging 32 px tiles to
128 px made the grid a tiny model's largest per-run cost.
"""

from __future__ import annotations

import functools
import textwrap
from typing import Any, Callable

import numpy as np

MAX_LINES = 8  # text lines beside a tile, at most
TEXT_WIDTH = 360
LINE = 15


class GridBuilder:
    def __init__(self, rows: list[list[int]], labels: list[list[str]] | None = None,
                 leads: list[np.ndarray | None] | None = None) -> None:
        """``rows``: job indices drawn in each row; ``labels``: text lines per row (None: no text);
        ``leads``: an extra first tile per row (an edit's input image)."""
        self.rows, self.labels = rows, labels
        self.leads = leads or [None] * len(rows)
        self.wanted = {n for row in rows for n in row}
        self.images: dict[int, np.ndarray] = {}

    @classmethod
    def by_prompt(cls, jobs: list, max_images: int, label: Callable[[dict], list[str]] | None = None,
                  lead: Callable[[dict], np.ndarray | None] | None = None) -> "GridBuilder":
        """One row per prompt (its images as columns), as many rows as ``max_images`` allows."""
        rows: dict[int, list[int]] = {}
        for n, job in enumerate(jobs):
            rows.setdefault(job.prompt_index, []).append(n)
        per_row = max(len(v) for v in rows.values()) + (1 if lead else 0) if rows else 1
        keep = list(rows)[:max(1, max_images // per_row)]
        first = {p: jobs[rows[p][0]].record for p in keep}
        return cls([rows[p] for p in keep], [label(first[p]) for p in keep] if label else None,
                   [lead(first[p]) for p in keep] if lead else None)

    @classmethod
    def plain(cls, n_jobs: int, max_images: int, columns: int = 8) -> "GridBuilder":
        """Rows of ``columns`` images without text (unconditional samples)."""
        columns = min(columns, max(1, n_jobs))
        shown = list(range(min(n_jobs, max(columns, (max_images // columns) * columns))))
        return cls([shown[i:i + columns] for i in range(0, len(shown), columns)])

    def add(self, job_index: int, image: np.ndarray) -> None:
        """Offer an image (uint8 HWC) as it is generated; kept only if the grid draws it."""
        if job_index in self.wanted:
            self.images[job_index] = image

    def render(self):
        from PIL import Image

        if not self.images:
            return Image.new("RGB", (1, 1), "white")
        h, w = next(iter(self.images.values())).shape[:2]
        font = _font()
        chars = max(16, int(TEXT_WIDTH / max(1.0, font.getlength("x"))))
        texts = [[piece for line in lines for piece in textwrap.wrap(line, chars)][:MAX_LINES]
                 for lines in self.labels] if self.labels else None
        needed = 6 + LINE * max((len(t) for t in texts), default=0) if texts else 0
        scale = max(1, -(-needed // h))  # whole factors keep pixels square and sharp
        th, tw = h * scale, w * scale
        per_row = max(len(r) + (lead is not None) for r, lead in zip(self.rows, self.leads))
        text_w = TEXT_WIDTH if texts else 0
        grid = Image.new("RGB", (per_row * tw + text_w, len(self.rows) * th), "white")
        for r, (row, lead) in enumerate(zip(self.rows, self.leads)):
            tiles = ([lead] if lead is not None else []) + [self.images.get(n) for n in row]
            for c, tile in enumerate(tiles):
                if tile is not None:
                    image = Image.fromarray(tile)
                    grid.paste(image if scale == 1 else image.resize((tw, th), Image.NEAREST), (c * tw, r * th))
            for k, line in enumerate(texts[r] if texts else []):
                grid.paste(_text(line), (per_row * tw + 6, r * th + 3 + LINE * k))
        return grid


@functools.lru_cache(maxsize=1)
def _font():
    from PIL import ImageFont

    return ImageFont.load_default(size=12)


@functools.lru_cache(maxsize=1024)  # a sweep's runs label their rows with the same prompts
def _text(line: str):
    """One line of black text on white, as ``ImageDraw.text`` draws it at the top left of a blank tile."""
    from PIL import Image, ImageDraw

    font = _font()
    right, bottom = font.getbbox(line)[2:]
    tile = Image.new("RGB", (max(1, int(right)), max(1, int(bottom))), "white")
    ImageDraw.Draw(tile).text((0, 0), line, fill="black", font=font)
    return tile


def encode_png(rgb: np.ndarray, level: int = 1) -> bytes:
    """A uint8 (H, W, 3) array as PNG bytes: every row with the "Up" filter, zlib at ``level``. For a
    preview this is 3x faster than Pillow's encoder (which tries every filter on every row) at the
    same size on photographs."""
    import struct
    import zlib

    h, w = rgb.shape[:2]
    rows = np.ascontiguousarray(rgb, dtype=np.uint8).reshape(h, w * 3)
    filtered = np.empty((h, w * 3 + 1), np.uint8)
    filtered[:, 0] = 2  # Up: each byte minus the one above it (the row above the first is zeros)
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, deflate, per-row filter types, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(filtered.tobytes(), level))
            + chunk(b"IEND", b""))


def hwc(image: Any) -> np.ndarray:
    """A uint8 (3, H, W) tensor as an HWC array (for lead tiles)."""
    return np.asarray(image.permute(1, 2, 0).numpy())
