"""``python -m evalrun.merge SWEEP_DIR [...]``: merge finished shards into one run per configuration.

Normally the last shard of a configuration to finish merges it; this does it by hand (after a
shard was re-run, or when shards ran on machines that could not see each other finish) and
lists, per configuration, the shards that are still missing. Exits non-zero when any are.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from evalrun.errors import EvalrunError

log = logging.getLogger(__name__)


def try_merge(shard_dir: Path) -> Path | None:
    """Merge the configuration of ``shard_dir`` if every shard is complete; None while some are missing.
    Two shards finishing at once merge once: the merge holds the merged run's lock."""
    from evalrun.shards import merged_dir_of, read_record, siblings

    record = read_record(shard_dir)
    if record is None:
        return None
    merged_dir = merged_dir_of(record, shard_dir)
    done = siblings(Path(shard_dir).parent, merged_dir, record)
    missing = sorted(set(range(record["num_shards"])) - set(done))
    if missing:
        log.info("shards %s of %d not finished yet: the merge into %s waits for them (or run "
                 "python -m evalrun.merge %s later)", missing, record["num_shards"], merged_dir, Path(shard_dir).parent)
        return None
    from omegaconf import OmegaConf

    from evalrun.run import run

    log.info("all %d shards finished: merging into %s", record["num_shards"], merged_dir)
    run(OmegaConf.create(record["config"]), merged_dir, image_sources=[done[i] for i in sorted(done)])
    return merged_dir


def plan(sweep_dir: Path) -> dict[Path, dict]:
    """merged dir -> {"shards": {index: dir}, "num_shards": N, "missing": [...]}, from the shard records."""
    from evalrun.shards import merged_dir_of, read_record, registered, siblings, split_of

    groups: dict[Path, dict] = {}
    seen: list[tuple[Path, dict, tuple]] = []  # each configuration and split once (a stale split beside a whole one)
    # The shards in the folder, and those recorded in it as their merge dir (shard_merge_dir, shards run anywhere).
    for child in [*sorted(Path(sweep_dir).iterdir()), *registered(Path(sweep_dir))]:
        record = read_record(child) if child.is_dir() else None
        if record is None or (merged_dir_of(record, child), record.get("config"), split_of(record)) in seen:
            continue
        merged = merged_dir_of(record, child)
        seen.append((merged, record.get("config"), split_of(record)))
        done = siblings(sweep_dir, merged, record)
        group = {"shards": done, "num_shards": record["num_shards"], "first": child,
                 "missing": sorted(set(range(record["num_shards"])) - set(done))}
        groups[merged if merged not in groups else child] = group  # one merge dir, two configurations: both listed
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evalrun.merge", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dirs", nargs="+", type=Path, help="sweep directories holding shard runs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from evalrun.aggregate import write_summary
    from evalrun.runs import check_sweep_dir

    status = 0
    for sweep_dir in args.sweep_dirs:
        try:
            check_sweep_dir(sweep_dir)
        except EvalrunError as exc:
            print(f"evalrun.merge: error: {exc}", file=sys.stderr)
            status = 2
            continue
        groups = plan(sweep_dir)
        if not groups:
            print(f"{sweep_dir}: no finished shards (shard.json) found", file=sys.stderr)
            status = 1
        done = []
        for merged, group in groups.items():
            if group["missing"]:
                print(f"{merged.name}: waiting for shard(s) {group['missing']} of {group['num_shards']}")
                status = 1
                continue
            try:
                try_merge(group["first"])
            except (EvalrunError, OSError) as exc:  # a merge dir that cannot be written: one line too
                print(f"{merged.name}: merge failed: {exc}", file=sys.stderr)
                status = 1
                continue
            done.append(merged)
            print(f"merged {group['num_shards']} shards -> {merged}")
        if done:
            try:
                write_summary(sweep_dir)
            except FileNotFoundError:  # the merged runs live elsewhere (shard_merge_dir): nothing to sum up here
                print(f"{sweep_dir}: no finished run here to summarise (merged runs: {', '.join(map(str, done))})")
    return status


if __name__ == "__main__":
    sys.exit(main())
