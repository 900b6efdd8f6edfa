"""``python -m evalrun.report SWEEP_DIR [SWEEP_DIR...] [options]``: tables, comparisons, plots, gallery.

Examples:
  python -m evalrun.report outputs/multirun/2026-11-23/20-15-03
  python -m evalrun.report SWEEP --rows scheduler --cols steps --metric fid clip_score
  python -m evalrun.report SWEEP_A SWEEP_B --compare model=sd14 model=sd15 --seed 0 --out paper/
  python -m evalrun.report SWEEP --labels labels.yaml   # e.g. "clip_score: CLIP score (ViT-B/16)"

Prints the paths it wrote; the report itself is report.md (and index.html) under --out.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from evalrun.errors import EvalrunError
from evalrun.report.significance import MIN_RESAMPLES


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evalrun.report", description=__doc__.splitlines()[0],
                                epilog="\n".join(__doc__.splitlines()[2:]), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR", help="sweep dirs, merged into one report")
    p.add_argument("--out", type=Path, default=None, help="output dir (default: <first sweep dir>/report)")
    p.add_argument("--rows", nargs="+", metavar="KEY", help="config keys for table rows (default: the varying keys)")
    p.add_argument("--cols", nargs="+", metavar="KEY", help="config keys for table columns (default: steps, if it varies)")
    p.add_argument("--metric", "--metrics", dest="metrics", nargs="+", metavar="METRIC",
                   help="metrics to tabulate, plot and compare (default: every score in the runs)")
    p.add_argument("--compare", nargs=2, action="append", metavar=("A", "B"),
                   help="paired comparison B - A, e.g. --compare model=sd14 model=sd15 (repeatable; "
                        "default: each value of every varying key against the first)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed, >= 0 (default 0)")
    p.add_argument("--resamples", type=int, default=10_000,
                   help=f"bootstrap resamples, at least {MIN_RESAMPLES} (default 10000)")
    p.add_argument("--x", default=None, metavar="KEY", help="plot x axis (default: steps)")
    p.add_argument("--hue", nargs="+", metavar="KEY", help="one plot line per value of these keys")
    p.add_argument("--format", dest="formats", action="append", default=[], metavar="METRIC=SPEC",
                   help="number format per metric, e.g. --format fid=.1f (repeatable)")
    p.add_argument("--labels", type=Path, default=None, metavar="FILE.yaml",
                   help="display names and units for metrics, keys and values (key: label, or key: {label, unit, "
                        "values: {value: text}})")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the plots")
    p.add_argument("--no-gallery", dest="gallery", action="store_false", help="skip the HTML gallery")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from evalrun.report.build import build_report
    from evalrun.report.significance import check_bootstrap

    try:
        check_bootstrap(args.resamples, args.seed, prefix="--")
        formats = {}
        for item in args.formats:
            metric, sep, spec = item.partition("=")
            if not sep:
                raise EvalrunError(f"--format {item!r}: write METRIC=SPEC, e.g. fid=.1f")
            try:
                format(1.0, spec)
            except ValueError as exc:
                raise EvalrunError(f"--format {item!r}: {exc}") from None
            formats[metric] = spec
        written = build_report(args.sweep_dirs, args.out, rows=args.rows, cols=args.cols, metrics=args.metrics,
                               compare=args.compare, x=args.x, hue=args.hue, seed=args.seed,
                               resamples=args.resamples, formats=formats, labels=args.labels, plots=args.plots,
                               gallery=args.gallery)
    except EvalrunError as exc:
        print(f"evalrun.report: error: {exc}", file=sys.stderr)
        return 2
    for kind, paths in written.items():
        for path in paths:
            print(f"wrote {kind}: {path}")
    print(f"report: {written['index'][0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
