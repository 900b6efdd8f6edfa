"""``python -m evalrun.score FOLDER [--reference REF] [--metrics fid,kid] [--out DIR] [overrides...]``

Score images made elsewhere in one line: folder against folder FID (what clean-fid users do
most), or any metrics on a folder or a CSV/JSONL listing images with prompts. The same run as
``evalrun model=images model.path=FOLDER reference=folder reference.path=REF "metrics=[...]"``,
with every number's provenance in the run directory it prints.

    python -m evalrun.score samples/ --reference real/ --metrics fid,kid
    python -m evalrun.score outputs.jsonl --metrics clip_score,pick_score
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evalrun.errors import EvalrunError


def quoted(path: Path) -> str:
    """A path as a Hydra override value: quoted, so commas, brackets, quotes and = in it stay part of it."""
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"


def overrides(args: argparse.Namespace) -> list[str]:
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    out = ["model=images", f"model.path={quoted(Path(args.images).resolve())}", f"metrics=[{','.join(metrics)}]"]
    if args.reference:
        kind = "npz" if str(args.reference).endswith(".npz") else "folder"
        out += [f"reference={kind}", f"reference.path={quoted(Path(args.reference).resolve())}"]
    if args.device:
        out.append(f"device={args.device}")
    return out + list(args.overrides)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evalrun.score", description=__doc__.splitlines()[0],
                                     epilog="\n".join(__doc__.splitlines()[2:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", help="a folder of images, or a .csv/.tsv/.jsonl with an image column")
    parser.add_argument("--reference", help="real images (a folder) or FID statistics (.npz)")
    parser.add_argument("--metrics", default=None, help="comma-separated (default: fid with a reference, else clip_score)")
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: outputs/runs/<date>/<time>)")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
    parser.add_argument("overrides", nargs="*", help="any other config override, e.g. metrics.kid.subset_size=100")
    args = parser.parse_intermixed_args(argv)
    args.metrics = args.metrics or ("fid" if args.reference else "clip_score")
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from evalrun.api import evaluate

    try:
        result = evaluate(overrides(args), run_dir=args.out)
    except EvalrunError as exc:
        print(f"evalrun.score: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # Hydra's own refusals of an override (an unknown key or option): one line too
        if not type(exc).__module__.startswith(("hydra", "omegaconf")):
            raise
        print(f"evalrun.score: error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    for name, value in result.values.items():
        print(f"{name}\t{value:.6g}" if isinstance(value, float) else f"{name}\t{value}")
    print(f"wrote {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
