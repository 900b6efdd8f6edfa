"""Quality versus cost: the Pareto marks on a hand-built table, and the report's cost columns, fronts and plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from evalrun.report import build_report, load_sweep
from evalrun.report.pareto import cost_quality, cost_quality_frames, mark_front
from evalrun.report.tables import summary_table
from report_synthetic import clip_value, default_costs, make_sweep, read_metrics

# (name, cost, quality): B beats C (same cost, better quality) and D (cheaper and better); E and A are cheap;
# F is the best and dearest; G has no cost; H ties A exactly (both stay on the front).
POINTS = [("A", 10, 0.5), ("B", 20, 0.7), ("C", 20, 0.6), ("D", 30, 0.65), ("E", 5, 0.3), ("F", 40, 0.9),
          ("G", np.nan, 1.0), ("H", 10, 0.5)]


def test_front_of_a_hand_built_table() -> None:
    table = pd.DataFrame(POINTS, columns=["name", "cost_mean", "quality_mean"])
    marked = mark_front(table, quality_higher=True)
    assert marked.loc[marked["pareto"], "name"].tolist() == ["A", "B", "E", "F", "H"]
    ranks = marked.dropna(subset=["front_rank"]).sort_values("front_rank")
    assert ranks["name"].tolist() == ["E", "A", "H", "B", "F"]  # cheapest first
    assert marked.loc[~marked["pareto"], "front_rank"].isna().all()
    # lower-is-better quality (FID): the same points with quality negated give the same front
    fid = table.assign(quality_mean=-table["quality_mean"])
    assert mark_front(fid, quality_higher=False)["pareto"].tolist() == marked["pareto"].tolist()
    # quality ignored where a higher cost would be better (a made-up axis): only direction flips
    flipped = mark_front(table, quality_higher=True, cost_higher=True)
    assert flipped.loc[flipped["pareto"], "name"].tolist() == ["F"]


def _clip_rises_with_steps(model, scheduler, steps, seed, prompt_id, image_index):
    # dpm: better at every step count; ddim at 4 steps is worse than dpm at 2 (dominated)
    return clip_value(model, scheduler, steps, seed, prompt_id, image_index) * 0.01 + steps + (3 if scheduler == "dpm" else 0)


def test_cost_columns_fronts_and_plots_in_the_report(tmp_path: Path) -> None:
    sweep_dir = make_sweep(tmp_path / "s", schedulers=("ddim", "dpm"), steps=(2, 4), seeds=(0, 1),
                           clip=_clip_rises_with_steps, costs=default_costs)
    sweep = load_sweep([sweep_dir])
    assert sweep.costs == ["nfe", "sample_seconds_per_image"]  # peak memory: no values on CPU, left out
    assert "nfe" not in sweep.scores
    points = cost_quality(sweep, "clip_score", "nfe").set_index(["scheduler", "steps"])
    runs = read_metrics(sweep_dir)
    expected = runs.groupby(["scheduler", "steps"])[["clip_score", "nfe"]].mean()
    np.testing.assert_allclose(points["quality_mean"], expected.loc[points.index, "clip_score"], rtol=1e-12)
    np.testing.assert_allclose(points["cost_mean"], expected.loc[points.index, "nfe"], rtol=1e-12)
    assert points["pareto"].to_dict() == {("ddim", 2): False, ("ddim", 4): False, ("dpm", 2): True, ("dpm", 4): True}
    # FID (lower is better) against seconds: the front follows the declared directions
    asked = cost_quality_frames(sweep, ["clip_score", "nfe"], sweep.costs)  # a cost named as a metric
    assert sorted((f["quality"].iloc[0], f["cost"].iloc[0]) for f in asked) == [
        ("clip_score", "nfe"), ("clip_score", "sample_seconds_per_image")]
    fid = cost_quality(sweep, "fid", "sample_seconds_per_image")
    assert fid["pareto"].tolist() == mark_front(fid, quality_higher=False)["pareto"].tolist()

    written = build_report([sweep_dir], metrics=["clip_score", "fid"], gallery=False)
    report = written["index"][0].read_text()
    assert "## Quality vs cost" in report and "### CLIP score vs NFE" in report
    assert "Pareto front (2 of 4 configurations; means over seeds):" in report
    assert "- Scheduler=dpm, Steps=2: NFE 4, CLIP score" in report
    saved = pd.read_csv(written["pareto"][0])
    assert set(saved["cost"]) == {"nfe", "sample_seconds_per_image"} and saved["pareto"].any()
    names = {p.name for p in written["plots"]}
    assert {"clip_score_vs_nfe.png", "clip_score_vs_nfe.svg", "fid_vs_sample_seconds_per_image.svg"} <= names
    assert not any("peak_memory" in n for n in names)
    svg = (sweep_dir / "report" / "plots" / "clip_score_vs_nfe.svg").read_text()
    assert "Pareto front" in svg and "dominated" in svg
    # costs in the summary: shown with their units and direction, never bold
    table = summary_table(sweep, ["clip_score"], costs=sweep.costs)
    assert table.headers["sample_seconds_per_image"] == "Seconds per image (s) ↓"
    assert not table.stats.loc[table.stats["metric"].isin(sweep.costs), ["top", "best"]].any().any()
    assert "costs (NFE, Seconds per image) are not marked" in table.note


def test_a_front_without_dominated_points_has_no_dominated_legend_entry(tmp_path: Path, monkeypatch) -> None:
    from evalrun.report import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, stem, caption: figures.append(fig) or [])
    for names in (["A", "E"], ["A", "B", "C"]):  # A and E: both on the front; C: dominated by B
        table = pd.DataFrame([p for p in POINTS if p[0] in names], columns=["name", "cost_mean", "quality_mean"])
        points = mark_front(table, quality_higher=True).assign(quality="clip_score", cost="seconds_per_image", n=2,
                                                                cost_std=0.0, quality_std=0.0)
        plots.plot_pareto(points, ["name"], tmp_path / "p")
    legends = [[t.get_text() for t in fig.axes[0].get_legend().get_texts()] for fig in figures]
    assert legends == [["Pareto front"], ["dominated", "Pareto front"]]
