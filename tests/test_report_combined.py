"""Reports over sweeps read together, and rebuilt: each image counted once, prompts paired by what
they say, every varying key shown, and no file left from an earlier build."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evalrun.errors import EvalrunError
from evalrun.report import build_report, load_sweep
from evalrun.report.compare import compare
from report_synthetic import PROMPTS, config, make_run, make_sweep


def _with_added_metric(source: Path, target: Path) -> Path:
    """``source`` re-run into ``target`` with pick_score added: the same images and values, one more
    metric (its own settings column, empty in ``source``'s runs)."""
    for run in sorted(p for p in source.iterdir() if (p / "run.json").exists()):
        twin = target / run.name
        shutil.copytree(run, twin)
        rng = np.random.default_rng(len(run.name))
        per_image = pd.read_csv(twin / "per_image.csv")
        per_image["pick_score"] = rng.normal(20, 1, len(per_image))
        per_image.to_csv(twin / "per_image.csv", index=False)
        row = pd.read_csv(twin / "metrics.csv")
        row.insert(list(row.columns).index("clip_score"), "pick_score.model", "yuvalkirstain/PickScore_v1")
        row["pick_score"] = per_image["pick_score"].mean()
        row.to_csv(twin / "metrics.csv", index=False)
        record = json.loads((twin / "run.json").read_text())
        record["config_columns"].append("pick_score.model")
        record["metric_columns"].append("pick_score")
        record["columns"]["pick_score"] = {"direction": "higher", "kind": "score", "per_image": True,
                                           "metric": "pick_score", "depends_on": ["pick_score.model"]}
        (twin / "run.json").write_text(json.dumps(record))
    return target


def test_a_sweep_rerun_with_an_added_metric_counts_each_image_once(tmp_path: Path) -> None:
    first = make_sweep(tmp_path / "first", schedulers=("ddim", "dpm"), steps=(2,), seeds=(0, 1, 2))
    again = _with_added_metric(first, tmp_path / "again")
    alone = load_sweep([first])
    both = load_sweep([first, again])
    assert len(both.runs) == len(alone.runs) == 6
    assert both.keys == ["scheduler"]  # pick_score.model (empty where not computed) is no key
    assert both.runs["pick_score"].notna().all() and both.runs["pick_score.model"].nunique() == 1
    for metric in ("clip_score", "fid"):
        expected = compare(alone, "scheduler=ddim", "scheduler=dpm", metrics=[metric]).results.iloc[0]
        found = compare(both, "scheduler=ddim", "scheduler=dpm", metrics=[metric]).results.iloc[0]
        assert found["pairs"] == expected["pairs"] and found["diff"] == pytest.approx(expected["diff"], abs=0)
    picks = compare(both, "scheduler=ddim", "scheduler=dpm", metrics=["pick_score"]).results.iloc[0]
    per_image = {name: pd.concat([pd.read_csv(p) for p in sorted((again).glob(f"*scheduler={name},*/per_image.csv"))])
                 for name in ("ddim", "dpm")}
    independent = per_image["dpm"]["pick_score"].to_numpy() - per_image["ddim"]["pick_score"].to_numpy()
    assert picks["pairs"] == len(independent) and picks["diff"] == pytest.approx(independent.mean(), rel=1e-12)


def test_per_image_pairs_need_the_same_prompt_text_and_metrics_without_pairs_are_skipped(tmp_path: Path) -> None:
    other = [{**p, "prompt": f"another prompt {i}"} for i, p in enumerate(PROMPTS)]  # same ids, other texts
    a = make_run(tmp_path / "a" / "scheduler=ddim", config(scheduler="ddim"))
    make_run(tmp_path / "b" / "scheduler=dpm", config(scheduler="dpm"), prompts=other)
    sweep = load_sweep([a.parent, tmp_path / "b"])
    result = compare(sweep, "scheduler=ddim", "scheduler=dpm", metrics=["clip_score", "fid"])
    assert list(result.results["metric"]) == ["fid"]  # the set metric is still compared
    assert "clip_score" in result.skipped and "seeds: [0] vs [0]" in result.skipped["clip_score"]
    with pytest.raises(EvalrunError, match=r"share no \(prompt, seed\) pairs with a clip_score value"):
        compare(sweep, "scheduler=ddim", "scheduler=dpm", metrics=["clip_score"])
    written = build_report([a.parent, tmp_path / "b"], out_dir=tmp_path / "r", plots=False)
    page = written["gallery"][0].read_text()
    assert page.count('<section class="prompt"') == 2 * len(PROMPTS)  # prompt 0 of each set: two sections
    assert 'id="prompt-p0"' in page and 'id="prompt-p0-2"' in page
    assert "Not compared: CLIP score" in (tmp_path / "r" / "comparisons.md").read_text()


def test_a_key_that_moves_with_another_is_shown(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "s"
    for scheduler, steps in (("ddim", 2), ("dpm", 3)):
        for seed in (0, 1):
            make_run(sweep_dir / f"scheduler={scheduler},seed={seed}", config(scheduler=scheduler, steps=steps, seed=seed))
    sweep = load_sweep([sweep_dir])
    assert sweep.keys == ["scheduler"] and sweep.moves_with == {"steps": "scheduler"}  # scheduler_class: declared
    build_report([sweep_dir], out_dir=tmp_path / "r", plots=False, gallery=True)
    report = (tmp_path / "r" / "report.md").read_text()
    assert "varying with them (one value per value of the key): Steps (`steps`, with `scheduler`)" in report
    summary = pd.read_csv(tmp_path / "r" / "tables" / "summary.csv")
    assert summary[["scheduler", "steps"]].drop_duplicates().values.tolist() == [["ddim", 2], ["dpm", 3]]
    # The gallery's summary holds the same cells, the moving column included (it showed a dash in every cell).
    page = (tmp_path / "r" / "index.html").read_text()
    table = page.split("<table>", 1)[1].split("</table>", 1)[0]
    rows = [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row) for row in table.split("</tr>")[:-1]]
    assert rows[0][:3] == ["Scheduler", "Steps", "CLIP score ↑"]
    cells = summary[summary["metric"] == "clip_score"]
    assert [row[:3] for row in rows[1:]] == [[w.scheduler, str(w.steps), w.cell] for w in cells.itertuples()]


def test_a_rebuilt_report_leaves_no_file_of_the_last_build(tmp_path: Path) -> None:
    sweep_dir = make_sweep(tmp_path / "s", schedulers=("ddim", "dpm"), steps=(2, 3), seeds=(0, 1))
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # a user's file in --out is never touched
    first = build_report([sweep_dir], out_dir=out)
    assert first["plots"] and first["gallery"] and first["comparisons"]
    for run in [*sweep_dir.glob("*scheduler=dpm,*"), *sweep_dir.glob("*steps=3")]:  # nothing left to compare
        shutil.rmtree(run, ignore_errors=True)
    build_report([sweep_dir], out_dir=out, plots=False, gallery=False)
    assert not (out / "index.html").exists() and not (out / "plots").exists()
    assert not (out / "comparisons.md").exists() and not (out / "comparisons.csv").exists()
    assert (out / "notes.txt").read_text() == "mine" and (out / "report.md").exists()
    assert all((out / rel).exists() for rel in json.loads((out / ".report_files").read_text()))


def test_labels_with_pipes_dotted_table_names_and_empty_cells(tmp_path: Path) -> None:
    sweep_dir = make_sweep(tmp_path / "s", schedulers=("ddim", "dpm"), steps=(2, 3), seeds=(0, 1))
    for run in sweep_dir.glob("*scheduler=dpm,*steps=3"):  # one empty cell, the rest n=2
        shutil.rmtree(run)
    written = build_report([sweep_dir], out_dir=tmp_path / "r", plots=False, gallery=False,
                           labels={"clip_score": "CLIP | ViT"}, rows=["scheduler", "clip_score.clip_model"],
                           cols=["steps"])
    lines = [line for line in (tmp_path / "r" / "comparisons.md").read_text().splitlines() if "ViT" in line]
    assert lines and all(r"CLIP \| ViT" in line and len(re.split(r"(?<!\\)\|", line)) == 12 for line in lines)
    names = [p.name for p in written["tables"]]
    assert "clip_score_by_scheduler_clip_score.clip_model_x_steps.md" in names  # not cut at the dot
    pivot = (tmp_path / "r" / "tables" / "clip_score_by_scheduler_clip_score.clip_model_x_steps.md").read_text()
    assert "n differs" not in pivot and "(n=" not in pivot and "over n=2 seeds" in pivot
