"""One configuration split into shards: the merge equals the unsharded run, whatever order shards
finish in, a missing shard is waited for and named, and a killed shard resumes."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

import inception_weights as iw  # noqa: E402
from conftest import cli, run_inprocess  # noqa: E402
from evalrun import shards  # noqa: E402
from evalrun.merge import try_merge  # noqa: E402

# Scoring chunks of 8 images instead of 64 (the same code path; each Inception pass costs ~0.2 s on
# one CPU thread): N = 17 is three chunks (8, 8, 1), one per shard.
CHUNK = 8
N = 17


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    from evalrun.metrics.features import store

    monkeypatch.setattr(store, "CHUNK", CHUNK)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    return iw.save_pngs(iw.random_images(12, 32, seed=4), tmp_path_factory.mktemp("reference"))


def common(reference: Path) -> list[str]:
    # One IS split: random-weight softmaxes are so peaked that a split of 5-6 images can leave a
    # class at probability exactly 0, and IS is NaN (in torch-fidelity too).
    return ["model=tiny_ddpm", f"num_images={N}", "steps=2", "metrics=[fid,kid,inception_score,cmmd]",
            "reference=folder", f"reference.path={reference}", "metrics.kid.subset_size=8", "metrics.kid.subsets=10",
            "metrics.inception_score.splits=1"]


def test_select_gives_whole_chunks_in_run_order():
    for mode in ("contiguous", "strided"):
        parts = [shards.select(300, 3, i, mode, chunk=64) for i in range(3)]
        assert sorted(j for p in parts for j in p) == list(range(300))  # every image exactly once
        for part in parts:
            starts = [j for j in part if j % 64 == 0]
            assert all(j + 1 in part or j + 1 == 300 or (j + 1) % 64 == 0 for j in part)  # whole chunks
            assert len(part) == sum(min(64, 300 - s) for s in starts)
    assert shards.select(300, 3, 1, "strided", chunk=64) == list(range(64, 128)) + list(range(256, 300))
    assert shards.select(300, 3, 0, "contiguous", chunk=64) == list(range(0, 128))
    # Balanced: no shard is left idle (ceil-sized blocks gave 600 images over 8 shards 128 x 4, 88, 0, 0, 0).
    assert [len(shards.select(600, 8, i, "contiguous", chunk=64)) for i in range(8)] == [128, 128, 64, 64, 64, 64, 64, 24]
    assert [len(shards.select(200, 3, i, "contiguous", chunk=64)) for i in range(3)] == [128, 64, 8]


def test_shards_in_reverse_order_merge_to_the_unsharded_run(tmp_path, reference, caplog):
    merged_dir = tmp_path / "merged"
    args = [*common(reference), "num_shards=3", f"shard_merge_dir={merged_dir}"]
    with caplog.at_level(logging.INFO):
        # The shards finish last first: nothing merges while one is missing.
        for shard in (2, 1):
            record = run_inprocess(*args, f"shard={shard}", run_dir=tmp_path / f"shard{shard}")
            assert record["shard"] == shard and try_merge(tmp_path / f"shard{shard}") is None
    assert "shards [0] of 3 not finished yet" in caplog.text and not (merged_dir / "run.json").exists()
    from evalrun.merge import main as merge_main

    assert merge_main([str(tmp_path)]) == 1  # by hand: says what it waits for
    run_inprocess(*args, "shard=0", run_dir=tmp_path / "shard0")
    assert try_merge(tmp_path / "shard0") == merged_dir
    merged = json.loads((merged_dir / "run.json").read_text())
    assert merged["provenance"]["images"]["sampled"] == 0  # every image came from the shards
    assert merged["provenance"]["features"]["extracted"] == 0  # every chunk's features were cached by the shards

    whole = run_inprocess(*common(reference), "paths.image_store=none", run_dir=tmp_path / "whole")
    assert whole["provenance"]["images"]["sampled"] == N  # made from scratch (no store): an independent run
    for name in ("fid", "kid_mean", "kid_std", "is_mean", "is_std", "cmmd"):
        assert merged["values"][name] == pytest.approx(whole["values"][name], rel=1e-6, abs=1e-12), name
    # The merge is the unsharded configuration (the whole run differs only in having no image store).
    assert {k: v for k, v in merged["config"].items() if k != "paths"} == \
        {k: v for k, v in whole["config"].items() if k != "paths"}
    for png in sorted((tmp_path / "whole" / "images").glob("*.png")):
        with Image.open(png) as a, Image.open(merged_dir / "images" / png.name) as b:
            assert np.array_equal(np.asarray(a), np.asarray(b)), png.name
    assert pd.read_csv(merged_dir / "per_image.csv")["image_id"].tolist() == \
        pd.read_csv(tmp_path / "whole" / "per_image.csv")["image_id"].tolist()


def test_a_killed_shard_reuses_its_finished_images(tmp_path, reference):
    args = ["model=tiny_ddpm", f"num_images={N}", "steps=2", "metrics=[]", "num_shards=2", "shard=0",
            f"shard_merge_dir={tmp_path / 'm'}", "paths.image_store=none"]  # no store: only the shard's own images
    run_inprocess(*args, run_dir=tmp_path / "s0")
    (tmp_path / "s0" / "shard.json").unlink()  # killed before it finished...
    for victim in sorted((tmp_path / "s0" / "images").glob("*.png"))[-3:]:
        victim.unlink()  # ... with its last images not yet written
    record = run_inprocess(*args, run_dir=tmp_path / "s0")
    assert record["images"] == {"sampled": 3, "reused": 2 * CHUNK - 3}  # shard 0 of 2: chunks 0 and 1


def test_a_sharded_sweep_through_the_cli_merges_and_summarises_once(tmp_path):
    cli("model=tiny_ddpm", f"num_images={N}", "steps=2", "num_shards=3", "shard=1,2,0", "shard_mode=strided",
        f"hydra.sweep.dir={tmp_path}", "-m")
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert len(summary) == 1 and summary["n_runs"].iloc[0] == 1 and "shard" not in summary
    merged = [p.parent for p in tmp_path.glob("*/run.json")]
    assert len(merged) == 1 and "shard=" not in merged[0].name
    assert len(pd.read_csv(merged[0] / "images.csv")) == N
    assert len(list(tmp_path.glob("*/shard.json"))) == 3 and not (tmp_path / "failed_runs.csv").exists()


def test_a_copied_sweep_merges_in_itself_and_names_its_missing_shard(tmp_path, caplog):
    """shard.json recorded the merged dir by absolute path: a sweep dir copied (or moved) elsewhere merged into
    the original, said it had merged although the copy missed a shard, and its summary dropped the configuration
    without a warning."""
    import shutil

    from evalrun.aggregate import main as aggregate_main
    from evalrun.merge import main as merge_main

    original, copy = tmp_path / "original", tmp_path / "copy"
    cli("model=tiny_ddpm", f"num_images={N}", "steps=2", "num_shards=2", "shard=0,1", f"hydra.sweep.dir={original}",
        "-m")
    shutil.copytree(original, copy)
    (merged,) = [p.parent.name for p in copy.glob("*/run.json")]
    (copy / merged / "run.json").unlink()
    shutil.rmtree(next(p for p in copy.iterdir() if "shard=1" in p.name))
    before = (original / merged / "run.json").stat().st_mtime_ns
    assert merge_main([str(copy)]) != 0  # a shard missing
    assert (original / merged / "run.json").stat().st_mtime_ns == before and not (copy / merged / "run.json").exists()
    with caplog.at_level(logging.WARNING):
        assert aggregate_main([str(copy)]) != 0  # no finished run in the copy
    assert f"finished shards but no merged run, left out of the summary: {merged}" in caplog.text
    shutil.copytree(next(p for p in original.iterdir() if "shard=1" in p.name), copy / "shard=1-restored")
    assert merge_main([str(copy)]) == 0 and (copy / merged / "run.json").exists()
    assert (original / merged / "run.json").stat().st_mtime_ns == before


def test_a_shared_merge_dir_never_mixes_configurations_and_a_failed_merge_is_a_failed_job(tmp_path, caplog):
    """One shard_merge_dir across a sweep over seeds: seed 1's shards are never completed with seed 0's;
    seed 1's merge, refused there (seed 0 merged first), is a failed job, listed, and the sweep exits 1."""
    merged = tmp_path / "merged"
    proc = cli("model=tiny_ddpm", "num_images=4", "steps=2", "metrics=[]", "seed=0,1", "num_shards=2", "shard=0,1",
               f"shard_merge_dir={merged}", "hydra.sweeper.max_batch_size=1", f"hydra.sweep.dir={tmp_path / 's'}", "-m",
               check=False)
    assert proc.returncode == 1
    record = json.loads((merged / "run.json").read_text())
    assert record["config"]["seed"] == 0  # the first configuration whose shards all finished
    failed = pd.read_csv(tmp_path / "s" / "failed_runs.csv")
    assert len(failed) == 1 and "seed=1" in failed["run_dir"][0] and "another configuration" in failed["error"][0]
    # Shards whose merged run is gone (a merge killed part-way) are named, not silently left out.
    from evalrun.aggregate import main as aggregate

    (merged / "run.json").unlink()
    with caplog.at_level(logging.WARNING):
        aggregate([str(tmp_path / "s")])
    assert "finished shards but no merged run" in caplog.text and "python -m evalrun.merge" in caplog.text
    # A merge that cannot be written is a failed job too (it was counted as a shard, and the sweep exited 0).
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    proc = cli("model=tiny_ddpm", "num_images=4", "steps=2", "metrics=[]", "num_shards=2", "shard=0,1",
               f"shard_merge_dir={blocked / 'merged'}", f"hydra.sweep.dir={tmp_path / 'b'}", "-m", check=False)
    failed = pd.read_csv(tmp_path / "b" / "failed_runs.csv")  # each shard, recording itself where the merge looks
    assert proc.returncode == 1 and len(failed) == 2 and failed["error"].str.contains("NotADirectoryError").all()


def test_a_sweep_of_some_shards_only_waits_without_calling_the_summary_failed(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        proc = cli("model=tiny_ddpm", "num_images=4", "steps=2", "metrics=[]", "num_shards=2", "shard=1",
                   f"hydra.sweep.dir={tmp_path}", "-m", check=False)
    text = caplog.text + proc.stdout + proc.stderr
    assert proc.returncode == 0 and "summary failed" not in text and "no merged run yet" in text


def test_the_summary_after_each_job_takes_in_the_run_a_shard_merged(tmp_path):
    """The incremental summary (what is left when the end of a sweep never runs) counts merged runs too."""
    from evalrun.aggregate import INDEX_FILE, SUMMARY_FILE, refresh

    cli("model=tiny_ddpm", "num_images=4", "steps=2", "metrics=[]", "num_shards=2", "shard=0,1",
        f"hydra.sweep.dir={tmp_path}", "-m")
    (tmp_path / SUMMARY_FILE).unlink()
    (tmp_path / INDEX_FILE).unlink()
    last = max(tmp_path.glob("*/shard.json"), key=lambda p: p.stat().st_mtime_ns).parent  # the one that merged
    refresh(tmp_path, last)
    assert len(pd.read_csv(tmp_path / SUMMARY_FILE)) == 1


def test_shards_run_apart_with_a_merge_dir_find_each_other(tmp_path):
    """Outside a sweep (shard_merge_dir=, the route for separate machines) shards in folders of their own merge."""
    from conftest import run_inprocess as run

    merged = tmp_path / "merged"
    common = ["model=tiny_ddpm", "num_images=4", "steps=2", "metrics=[]", "num_shards=2", f"shard_merge_dir={merged}"]
    for shard in (0, 1):
        run(*common, f"shard={shard}", run_dir=tmp_path / f"node{shard}" / "run")
        assert try_merge(tmp_path / f"node{shard}" / "run") == (merged if shard == 1 else None)
    assert len(pd.read_csv(merged / "images.csv")) == 4 and (merged / "run.json").exists()


def test_shards_of_another_split_are_not_merged_with_these(tmp_path, caplog):
    """Shard 0 of 2 is not shard 0 of 3 (nor a strided shard a contiguous one): counted, it left a block of
    images for the merging job to sample, unannounced. The merge waits for its own shards and says why."""
    from conftest import run_inprocess as run

    merged = tmp_path / "merged"
    common = ["model=tiny_ddpm", "num_images=1", "steps=1", "metrics=[]", f"shard_merge_dir={merged}"]
    run(*common, "num_shards=2", "shard=0", run_dir=tmp_path / "a" / "run")
    run(*common, "num_shards=3", "shard=1", run_dir=tmp_path / "b1" / "run")
    run(*common, "num_shards=3", "shard=2", run_dir=tmp_path / "b2" / "run")
    with caplog.at_level(logging.WARNING):
        assert try_merge(tmp_path / "b2" / "run") is None
    assert "is shard 0 of 2 (contiguous) of this configuration, where this merge's shards are of 3 (contiguous)" \
        in caplog.text and not (merged / "run.json").exists()


def test_merge_by_hand_merges_a_complete_split_beside_a_stale_one(tmp_path, monkeypatch):
    """A stale shard 0 of 2 sorted first made the configuration's 'first' shard: the complete 3-way split
    was never merged (it waited for shard 1 of 2)."""
    from evalrun import merge

    config = {"seed": 0}
    for name, shard, of in (("a_old0", 0, 2), ("b_0", 0, 3), ("b_1", 1, 3), ("b_2", 2, 3)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "shard.json").write_text(json.dumps(
            {"status": "complete", "shard": shard, "num_shards": of, "shard_mode": "contiguous", "chunk": 64,
             "merged_dir": str(tmp_path / "merged"), "config": config}))
    groups = list(merge.plan(tmp_path).values())
    assert sorted((g["num_shards"], g["missing"]) for g in groups) == [(2, [1]), (3, [])]
    complete = next(g for g in groups if not g["missing"])
    assert sorted(complete["shards"]) == [0, 1, 2] and complete["first"].name.startswith("b_")


def test_a_shard_recorded_by_an_older_version_merges_with_a_new_one(tmp_path, monkeypatch):
    """Records of older versions hold a sweep's relative merged dir and no merged_beside: compared with a new
    record's (absolute, by name beside the shard) the two spellings never matched, and the old complete shard
    counted as missing. A shard_merge_dir shared by shards of two sweep dirs merges too."""
    from evalrun import merge

    monkeypatch.chdir(tmp_path)
    sweep = Path("outputs") / "sw"
    base = {"status": "complete", "num_shards": 2, "shard_mode": "contiguous", "chunk": 64, "config": {"seed": 0}}
    for name, extra in (("s0", {"shard": 0, "merged_dir": "outputs/sw/merged"}),
                        ("s1", {"shard": 1, "merged_dir": str(tmp_path / sweep / "merged"), "merged_beside": "merged"})):
        (sweep / name).mkdir(parents=True)
        (sweep / name / "shard.json").write_text(json.dumps({**base, **extra}))
    for where in (sweep, tmp_path / sweep):
        (group,) = merge.plan(where).values()
        assert group["missing"] == [] and sorted(group["shards"]) == [0, 1]
    for name, shard in (("A/s0", 0), ("B/s1", 1)):  # shard_merge_dir=outputs/A/merged, given by the user
        (Path("outputs") / name).mkdir(parents=True)
        (Path("outputs") / name / "shard.json").write_text(json.dumps(
            {**base, "shard": shard, "merged_dir": "outputs/A/merged", "merged_beside": None}))
    assert sorted(shards.siblings(Path("outputs/B"), tmp_path / "outputs" / "A" / "merged")) == [1]
    assert sorted(shards.siblings(Path("outputs/A"), Path("outputs/A/merged"))) == [0]


def test_a_sweep_merge_is_found_by_name_only_beside_its_shard(tmp_path):
    """A nested hydra.sweep.subdir puts a shard below the sweep dir, where the merged run is not: its record
    keeps the merged dir's path, and the sibling layout is found by name (a copied sweep merges in itself)."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"shard": 0, "num_shards": 2, "shard_mode": "contiguous", "shard_merge_dir": None})
    stream = SimpleNamespace(sampled=0, reused=0)
    merged = tmp_path / "sw" / "model=x"
    for run_dir, beside in ((tmp_path / "sw" / "shard=0,model=x" / "run", None), (tmp_path / "sw" / "shard=0,m", "model=x")):
        run_dir.mkdir(parents=True)
        record = shards.write_record(run_dir, cfg, "key", merged, [], stream)
        assert record["merged_beside"] == beside and shards.merged_dir_of(record, run_dir) == merged


def test_merge_by_hand_names_a_wrong_folder_in_one_line(tmp_path, capsys):
    from evalrun.merge import main as merge_main

    (tmp_path / "afile").write_text("")
    for wrong, what in ((tmp_path / "nope", "does not exist"), (tmp_path / "afile", "is a file, not a folder")):
        assert merge_main([str(wrong)]) == 2  # was os.listdir's traceback
        err = capsys.readouterr().err
        assert err.startswith("evalrun.merge: error: sweep dir") and what in err and len(err.splitlines()) == 1


def test_merge_by_hand_into_a_merge_dir_elsewhere_says_so_instead_of_a_traceback(tmp_path, capsys):
    """Shards in one folder merging into shard_merge_dir elsewhere: the merge succeeded, then summarising the
    shards' folder (no finished run in it) raised FileNotFoundError."""
    import shutil

    from conftest import run_inprocess as run
    from evalrun import merge

    merged = tmp_path / "merged"
    common = ["model=tiny_ddpm", "num_images=2", "steps=1", "metrics=[]", "num_shards=2", f"shard_merge_dir={merged}"]
    for shard in (0, 1):
        run(*common, f"shard={shard}", run_dir=tmp_path / "shards" / f"r{shard}")
    shutil.rmtree(merged)  # merged again by hand
    assert merge.main([str(tmp_path / "shards")]) == 0
    out = capsys.readouterr().out
    assert f"merged 2 shards -> {merged}" in out and "no finished run here to summarise" in out
    assert (merged / "run.json").exists()


def test_merge_by_hand_of_the_merge_dir_finds_the_shards_recorded_in_it(tmp_path, capsys):
    """Shards run in folders of their own record themselves in shard_merge_dir/.shards; merging that folder
    by hand said 'no finished shards (shard.json) found'."""
    from conftest import run_inprocess as run
    from evalrun import merge

    merged = tmp_path / "merged"
    common = ["model=tiny_ddpm", "num_images=2", "steps=1", "metrics=[]", "num_shards=2", f"shard_merge_dir={merged}"]
    for shard in (0, 1):
        run(*common, f"shard={shard}", run_dir=tmp_path / f"node{shard}" / "run")  # in-process: no merge yet
    assert [p.name for p in merged.iterdir()] == [".shards"]
    status = merge.main([str(merged)])
    out = capsys.readouterr()
    assert status == 0 and f"merged 2 shards -> {merged}" in out.out, out
    assert (merged / "run.json").exists() and len(pd.read_csv(merged / "images.csv")) == 2


def test_a_merge_that_fails_is_not_listed_as_merged(tmp_path, capsys):
    from conftest import run_inprocess as run
    from evalrun import merge

    merged = tmp_path / "merged"
    common = ["model=tiny_ddpm", "num_images=2", "steps=1", "metrics=[]", "num_shards=2", f"shard_merge_dir={merged}"]
    for shard in (0, 1):
        run(*common, f"shard={shard}", run_dir=tmp_path / "shards" / f"r{shard}")
    import shutil

    shutil.rmtree(merged)
    merged.write_text("a file where the merged run goes")
    assert merge.main([str(tmp_path / "shards")]) == 1
    out = capsys.readouterr()
    assert "merged: merge failed" in out.err and "merged runs" not in out.out and "merged 2 shards" not in out.out
