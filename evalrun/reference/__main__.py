"""``python -m evalrun.reference``: list cached reference features, export FID statistics.

    python -m evalrun.reference list
    python -m evalrun.reference export --kind folder --path DIR [--resize 256 --center-crop] OUT.npz
    python -m evalrun.reference export --key KEY OUT.npz     # a cached entry, as listed
    python -m evalrun.reference adm-batch RUN_DIR [OUT.npz] [--seed N]  # a run's images for ADM's evaluator.py

Exporting from a source computes (or finds in the cache) the Inception pool3 statistics
exactly as the ``fid`` metric does, so the .npz gives the same FID as the images.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

import numpy as np

from evalrun.errors import EvalrunError


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")  # as the main CLI accepts (evalrun.config)
# The config keys that export's options fill in, as the errors of the code it shares name them.
_FLAGS = {"reference.path": "--path", "reference.kind": "--kind", "reference.split": "--split",
          "reference.image_column": "--image-column", "reference.center_crop": "--center-crop",
          "reference.resize": "--resize", "reference.limit": "--limit", "device": "--device",
          "--weights.feature_extractor_weights_sha256": "--weights-sha256"}
_KEY = re.compile(r"(?<![\w./-])(" + "|".join(re.escape(k) for k in sorted(_FLAGS, key=len, reverse=True)) + r")\b(=?)")


def _flags(message: str) -> str:
    """An error from the code export shares with runs, naming export's flags rather than config keys
    (``reference.limit=0`` -> ``--limit 0``)."""
    def flag(m: re.Match) -> str:
        if m[1] == "device" and not m[2]:  # the word, not the key
            return m[0]
        return _FLAGS[m[1]] + (" " if m[2] else "")

    return _KEY.sub(flag, message)


def _list(args) -> int:
    from evalrun.reference.cache import cache_root

    root = cache_root(args.cache_dir)
    for meta_path in sorted(root.glob("*/meta.json")):
        meta = json.loads(meta_path.read_text())
        ext = meta.get("extractor", {})
        weights = ext.get("weights", {})
        digest = weights.get("sha256") or weights.get("tensors_sha256") or _folder_digest(weights.get("files"))
        print(f"{meta_path.parent.name}  n={meta.get('n')}  {meta.get('reference')}  {ext.get('extractor')}  "
              f"layers={','.join(ext.get('layers', {}))}  weights={str(digest)[:12]}  skipped={len(meta.get('skipped', []))}")
    return 0


def _folder_digest(files: dict[str, str] | None) -> str:
    """A model folder's weights (CLIP, DINOv2: a sha256 per file) as one digest: its weights file's, the
    one that tells two entries' networks apart, else a hash of the whole listing."""
    from evalrun.hashing import stable_hash

    if not files:
        return "unrecorded"
    weights = [name for name in files if name.endswith((".safetensors", ".bin", ".pt", ".pth"))]
    return files[weights[0]] if len(weights) == 1 else stable_hash(files)


def _export(args) -> int:
    from evalrun.metrics.functional.fid import GaussianStats
    from evalrun.reference.cache import Reference, cache_root
    from evalrun.reference.npz import save_npz
    from evalrun.reference.spec import ReferenceSpec

    if args.key:
        entry = cache_root(args.cache_dir) / args.key
        if not (entry / "meta.json").exists():
            raise EvalrunError(f"no cached reference {args.key!r} under {entry.parent}; see `python -m evalrun.reference list`")
        meta = json.loads((entry / "meta.json").read_text())
        if not (entry / "features_2048.npy").exists():
            raise EvalrunError(f"cached reference {args.key!r} holds {meta.get('extractor', {}).get('extractor')} "
                               f"features, not Inception pool3: FID statistics need those")
        stats = GaussianStats.from_features(np.load(entry / "features_2048.npy"))
        meta = {**meta, "layer": "2048"}
    else:
        from evalrun.config import resolve_device
        from evalrun.metrics.features import build_extractor

        if not args.path:
            raise EvalrunError("export needs --path DIR (a folder of images; with --kind dataset, a dataset name or "
                               "folder), or --key KEY for a cached entry (see `python -m evalrun.reference list`)")
        if not _DEVICE.match(args.device):
            raise EvalrunError(f"--device {args.device!r} is not a torch device; use cpu, cuda, cuda:N or auto")
        device = str(resolve_device(args.device))
        cfg = {"kind": args.kind, "path": args.path, "split": args.split, "image_column": args.image_column,
               "center_crop": args.center_crop, "resize": args.resize, "limit": args.limit}
        spec = ReferenceSpec.from_config(cfg, "export")
        extractor = build_extractor("inception", device, path=args.weights, batch_size=args.batch_size,
                                    weights_sha256=args.weights_sha256, key="--weights")
        stats, info = Reference(spec, args.cache_dir).stats(extractor, "2048", "export")
        meta = {**info, "extractor": extractor.identity(), "layer": "2048"}
    save_npz(args.out, stats, meta)
    print(f"wrote {args.out} (n={stats.n}, dim={len(stats.mu)})")
    return 0


def _run_seed(run_dir) -> int:
    """The seed of the run's Inception Score order (run.json), else the run's seed (metrics.csv): the order
    metrics.adm.write_batch uses."""
    import json

    import pandas as pd

    record = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    is_seed = ((record.get("provenance") or {}).get("metrics") or {}).get("inception_score", {}).get("is_seed")
    if isinstance(is_seed, int):
        return is_seed
    found = pd.read_csv(run_dir / "metrics.csv")["seed"] if (run_dir / "metrics.csv").exists() else None
    if found is None or found.isna().any():
        raise EvalrunError(f"{run_dir} has no seed in metrics.csv (an unfinished run?); give the batch order's --seed")
    return int(found.iloc[0])


def _adm_batch(args) -> int:
    """A finished run's images as an ADM sample batch: arr_0, and arr_1 class labels when the run has them;
    in the seeded order metrics.adm.write_batch writes during a run (functional.inception_score.
    split_permutation, with the run's IS seed unless --seed), streamed."""
    from pathlib import Path

    import pandas as pd
    from PIL import Image

    from evalrun.images import to_rgb
    from evalrun.metrics.functional.adm_batches import write_adm_batch
    from evalrun.metrics.functional.inception_score import split_permutation

    run_dir = Path(args.run_dir)
    if not (run_dir / "images.csv").exists():
        raise EvalrunError(f"{run_dir} has no images.csv: not a finished evalrun run directory")
    rows = pd.read_csv(run_dir / "images.csv")
    seed = args.seed if args.seed is not None else _run_seed(run_dir)
    rows = rows.iloc[split_permutation(len(rows), seed)]
    labels = rows["class_id"].astype("int64").to_numpy() if "class_id" in rows and rows["class_id"].notna().all() else None

    def batches(size: int = 256):
        for lo in range(0, len(rows), size):
            yield np.stack([np.asarray(to_rgb(Image.open(run_dir / p)), dtype=np.uint8)
                            for p in rows["path"].iloc[lo:lo + size]])

    out = Path(args.out or run_dir / "adm_batch.npz")
    write_adm_batch(out, batches(), count=len(rows), labels=labels)
    print(f"wrote {out} ({len(rows)} images{', with class labels' if labels is not None else ''}, in the "
          f"permutation of seed {seed})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evalrun.reference",
                                     description="List cached reference features; export FID statistics (mu, sigma) to .npz.")
    parser.add_argument("--cache-dir", default=None, help="evalrun cache (default $EVALRUN_CACHE)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="cached reference features")
    exp = sub.add_parser("export", help="write FID statistics (mu, sigma) to an .npz")
    exp.add_argument("out")
    exp.add_argument("--key", help="a cached entry (from `list`) instead of a source")
    exp.add_argument("--kind", choices=["folder", "dataset"], default="folder")
    exp.add_argument("--path")
    exp.add_argument("--split", default="train")
    exp.add_argument("--image-column", default="image")
    exp.add_argument("--center-crop", nargs="?", const=True, default=False,
                     type=lambda v: v if v is True else int(v), help="largest centred square, or this size")
    exp.add_argument("--resize", type=int, default=None)
    exp.add_argument("--limit", type=int, default=None)
    exp.add_argument("--weights", default=None, help="Inception weights file (default: download torch-fidelity's)")
    exp.add_argument("--weights-sha256", default="official", help="official (default), any, or a sha256")
    exp.add_argument("--device", default="cpu")
    exp.add_argument("--batch-size", type=int, default=50)
    adm = sub.add_parser("adm-batch", help="a finished run's images as an ADM sample batch (.npz for evaluator.py)")
    adm.add_argument("run_dir")
    adm.add_argument("out", nargs="?", default=None, help="default: RUN_DIR/adm_batch.npz")
    adm.add_argument("--seed", type=int, default=None,
                     help="order: numpy RandomState(SEED).permutation of the run's images (default: the seed of "
                          "the run's Inception Score splits, else the run's seed)")
    for command in sub.choices.values():  # also after the command; SUPPRESS: not given there, the first one stands
        command.add_argument("--cache-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        return {"list": _list, "export": _export, "adm-batch": _adm_batch}[args.command](args)
    except EvalrunError as exc:
        print(f"error: {_flags(str(exc)) if args.command == 'export' else exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
