"""``grid.png``: the run's images at a glance, one labelled row per prompt (or input, or class).

The builder decides from the job list which images it will draw, keeps only those as they
stream past, and renders rows of tiles with their text beside them: the prompt for
text-to-image, the instruction and both captions (plus the input image as the first tile)
for edits, the class word for class-conditional runs. Unconditional samples have no text
and fill plain rows. Tiles smaller than 128 px are enlarged (nearest) so text stays legible.
"""

from __future__ import annotations

import textwrap
from typing import Any, Callable

import numpy as np

MIN_TILE = 128
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
        from PIL import Image, ImageDraw, ImageFont

        if not self.images:
            return Image.new("RGB", (1, 1), "white")
        h, w = next(iter(self.images.values())).shape[:2]
        scale = max(1, -(-MIN_TILE // min(h, w))) if self.labels else 1
        th, tw = h * scale, w * scale
        per_row = max(len(r) + (lead is not None) for r, lead in zip(self.rows, self.leads))
        font = ImageFont.load_default(size=12)
        chars = max(16, int(TEXT_WIDTH / max(1.0, font.getlength("x"))))
        texts = [[piece for line in lines for piece in textwrap.wrap(line, chars)][:max(1, th // LINE)]
                 for lines in self.labels] if self.labels else None
        text_w = TEXT_WIDTH if texts else 0
        grid = Image.new("RGB", (per_row * tw + text_w, len(self.rows) * th), "white")
        draw = ImageDraw.Draw(grid)
        for r, (row, lead) in enumerate(zip(self.rows, self.leads)):
            tiles = ([lead] if lead is not None else []) + [self.images.get(n) for n in row]
            for c, tile in enumerate(tiles):
                if tile is not None:
                    grid.paste(Image.fromarray(tile).resize((tw, th), Image.NEAREST), (c * tw, r * th))
            for k, line in enumerate(texts[r] if texts else []):
                draw.text((per_row * tw + 6, r * th + 3 + LINE * k), line, fill="black", font=font)
        return grid


def hwc(image: Any) -> np.ndarray:
    """A uint8 (3, H, W) tensor as an HWC array (for lead tiles)."""
    return np.asarray(image.permute(1, 2, 0).numpy())
