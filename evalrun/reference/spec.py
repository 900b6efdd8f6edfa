"""What a reference is: a folder of images, a ``datasets`` split, an ``.npz`` of statistics, or an ADM
reference batch (guided-diffusion's evaluator layout: ``arr_0`` images and/or ``mu``, ``sigma``,
``mu_s``, ``sigma_s``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from evalrun.errors import ConfigError, EvalrunError, true_or_false

KINDS = ("none", "folder", "dataset", "npz", "adm")
HINT = ("set reference=folder reference.path=DIR (or reference=dataset reference.path=NAME_OR_DIR, "
        "or reference=npz reference.path=stats.npz)")


def _positive(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"reference.{key} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class ReferenceSpec:
    kind: str
    path: str | None = None
    name: str | None = None          # dataset config name
    split: str = "train"
    image_column: str = "image"
    revision: str | None = None
    center_crop: bool | int = False  # True: largest centred square; int: that square size
    resize: int | tuple[int, int] | None = None  # int: square; [height, width]
    limit: int | None = None         # first N images, or N drawn with shuffle_seed
    shuffle_seed: int | None = None
    strict: bool = False             # refuse (rather than skip with a warning) unreadable images

    @classmethod
    def from_config(cls, cfg: Any, metric: str) -> "ReferenceSpec":
        """Validate the ``reference`` config group (no files are read here beyond existence checks)."""
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
        cfg = dict(cfg or {})
        if cfg.get("kind", "none") in (None, "none"):
            raise ConfigError(f"{metric} needs a reference: {HINT}")
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(cfg) - set(valid))
        if unknown:
            raise ConfigError(f"reference has no key(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
        if cfg["kind"] not in KINDS:
            raise ConfigError(f"reference.kind={cfg['kind']!r}; valid: {', '.join(KINDS)}")
        if not cfg.get("path") or cfg.get("path") == "???":
            if cfg["kind"] == "adm":  # the ADM protocol reads only its reference batch
                raise ConfigError("reference.path is not set: set reference.path=FILE.npz, the ADM evaluator's "
                                  "reference batch (e.g. VIRTUAL_imagenet256_labeled.npz)")
            raise ConfigError(f"reference.path is not set: {HINT}")
        resize = cfg.get("resize")
        if isinstance(resize, (list, tuple)):
            if len(resize) != 2:
                raise ConfigError(f"reference.resize must be an int or [height, width], got {list(resize)}")
            resize = tuple(_positive("resize", v) for v in resize)
        elif resize is not None:
            resize = _positive("resize", resize)
        for key in ("limit", "center_crop"):
            value = cfg.get(key)
            if value is not None and not isinstance(value, bool):
                _positive(key, value)
        seed = cfg.get("shuffle_seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**32 - 1):
            raise ConfigError(f"reference.shuffle_seed must be null or an integer from 0 to 2**32 - 1, got {seed!r}")
        true_or_false("reference.strict", cfg.get("strict"))
        path = Path(str(cfg["path"])).expanduser()
        if cfg["kind"] == "folder" and not path.is_dir():
            raise ConfigError(f"reference.path={cfg['path']}: not a directory of images")
        if cfg["kind"] == "folder":  # the first image found is enough: answered before torch is imported
            from evalrun.images import IMAGE_SUFFIXES

            if next((f for f in path.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()), None) is None:
                raise ConfigError(f"reference.path={cfg['path']} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        if cfg["kind"] in ("npz", "adm") and not path.is_file():
            raise ConfigError(f"reference.path={cfg['path']}: no such .npz file")
        if cfg["kind"] == "adm" and (cfg.get("center_crop") or resize is not None or cfg.get("limit") is not None):
            raise ConfigError("reference=adm is read as the ADM evaluator reads it: all of arr_0, as stored; "
                              "remove reference.center_crop, reference.resize and reference.limit")
        return cls(**{**cfg, "path": str(cfg["path"]), "resize": resize})

    def describe(self) -> str:
        extra = f"[{self.split}]" if self.kind == "dataset" else ""
        return f"{self.kind}:{self.path}{extra}"

    def preprocessing(self) -> dict[str, Any]:
        import PIL  # its version decides JPEG decoding and the bicubic kernel, so it is part of the key

        from evalrun.images import RGB_CONVERSION

        return {"convert": RGB_CONVERSION, "center_crop": self.center_crop,
                "resize": list(self.resize) if isinstance(self.resize, tuple) else self.resize,
                "resize_filter": "PIL bicubic (antialiased), uint8" if self.resize else None, "pillow": PIL.__version__}

    def require_images(self, metric: str) -> None:
        if self.kind == "adm":
            from evalrun.metrics.functional.adm_batches import npz_keys

            if "arr_0" not in npz_keys(self.path):
                raise EvalrunError(f"reference {self.describe()} holds only statistics (no arr_0 images); {metric} needs "
                                   f"reference images: use an ADM reference batch with arr_0, or a folder/dataset")
            return
        if self.kind == "npz":
            raise EvalrunError(f"reference {self.describe()} holds only statistics; {metric} needs reference images: "
                               f"set reference=folder reference.path=DIR or reference=dataset reference.path=NAME")
