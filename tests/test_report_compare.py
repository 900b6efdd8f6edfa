"""Paired comparisons: pairing by (prompt, image, seed) or seed, a seeded bootstrap, clear failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evalrun.errors import EvalrunError
from evalrun.report import build_report, load_sweep
from evalrun.report.__main__ import main as report_main
from evalrun.report.compare import bootstrap_t_ci, compare, parse_selector
from report_synthetic import clip_value, make_sweep, read_metrics


def _result(comparison, metric: str) -> pd.Series:
    return comparison.results.set_index("metric").loc[metric]


def test_bootstrap_t_is_deterministic_and_equals_the_textbook_studentized_interval() -> None:
    diffs = np.random.default_rng(123).normal(0.5, 2.0, size=24)
    first = bootstrap_t_ci(diffs, seed=7, resamples=10_000)
    assert first == bootstrap_t_ci(diffs, seed=7, resamples=10_000)
    assert first != bootstrap_t_ci(diffs, seed=8, resamples=10_000)
    rng = np.random.default_rng(7)  # Efron & Tibshirani (1993), 12.5: t* = (mean* - mean) / se*, one resample at a time
    n, mean, se = diffs.size, diffs.mean(), diffs.std(ddof=1) / np.sqrt(diffs.size)
    drawn = diffs[rng.integers(0, n, size=(10_000, n))]
    t = [(row.mean() - mean) / (row.std(ddof=1) / np.sqrt(n)) for row in drawn]
    q_low, q_high = np.percentile(t, [2.5, 97.5])
    np.testing.assert_allclose(first, (mean - q_high * se, mean - q_low * se), rtol=1e-12, atol=1e-12)
    assert first[0] < diffs.mean() < first[1]
    big = np.arange(5000.0)  # chunked resampling (memory bound) stays deterministic
    assert bootstrap_t_ci(big, seed=1, resamples=3000) == bootstrap_t_ci(big, seed=1, resamples=3000)
    assert bootstrap_t_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)


def test_is_sd15_better_than_sd14_on_clip_score_over_3_seeds(tmp_path: Path) -> None:
    # sd15 scores exactly 1.0 higher on every image: the interval is [1, 1] and excludes zero.
    def clip(model, scheduler, steps, seed, prompt_id, image_index):
        return clip_value("base", scheduler, steps, seed, prompt_id, image_index) + (1.0 if model == "sd15" else 0.0)

    sweep_dir = make_sweep(tmp_path / "s", models=("sd14", "sd15"), schedulers=("ddim",), steps=(2,), seeds=(0, 1, 2),
                           images_per_prompt=2, clip=clip)
    sweep = load_sweep([sweep_dir])
    c = compare(sweep, "model=sd14", "model=sd15", seed=0)
    r = _result(c, "clip_score")
    assert r["kind"] == "per-image" and r["pairs"] == 4 * 2 * 3  # prompts x images x seeds
    assert (r["units"], r["unit"]) == (4, "prompts")  # tested over prompts: their images are not independent
    assert r["diff"] == pytest.approx(1.0) and r["ci95_low"] == pytest.approx(1.0) and r["excludes_zero"]
    assert r["verdict"] == "model=sd15 better"
    assert c.paired_on == ["seed"] and c.differs == {"model_path": "runwayml/sd14 vs runwayml/sd15"}
    fid = _result(c, "fid")  # a set metric: one pair per seed, numbers from metrics.csv
    runs = read_metrics(sweep_dir)
    wide = runs.pivot(index="seed", columns="model", values="fid")
    assert fid["kind"] == "set" and fid["pairs"] == 3
    assert fid["diff"] == pytest.approx((wide["sd15"] - wide["sd14"]).mean(), rel=1e-12)
    assert fid["verdict"].startswith("no significant") or fid["verdict"] in ("model=sd15 better", "model=sd14 better")
    assert "mystery" in set(c.results["metric"]) and "kid_std" not in set(c.results["metric"])


def test_direction_decides_the_verdict(tmp_path: Path) -> None:
    sweep_dir = make_sweep(tmp_path / "s", schedulers=("ddim",), steps=(2, 40), seeds=(0, 1, 2, 3))
    sweep = load_sweep([sweep_dir])
    runs = sweep.runs  # make fid clearly worse (higher) at 40 steps, and kid clearly better (lower)
    runs.loc[runs["steps"] == 40, "fid"] = runs.loc[runs["steps"] == 2, "fid"].to_numpy() + 10
    runs.loc[runs["steps"] == 40, "kid_mean"] = runs.loc[runs["steps"] == 2, "kid_mean"].to_numpy() - 0.5
    runs.loc[runs["steps"] == 40, "mystery"] = runs.loc[runs["steps"] == 2, "mystery"].to_numpy() + 3
    c = compare(sweep, {"steps": 2}, {"steps": 40})
    assert _result(c, "fid")["verdict"] == "steps=2 better"
    assert _result(c, "kid_mean")["verdict"] == "steps=40 better"
    assert _result(c, "mystery")["verdict"] == "steps=40 higher"  # no direction in run.json


def test_pairs_match_on_prompt_id_not_row_order_and_on_other_keys(tmp_path: Path) -> None:
    sweep_dir = make_sweep(tmp_path / "s", schedulers=("ddim", "dpm"), steps=(2, 3), seeds=(0, 1))
    shuffled = (sweep_dir / "model=sd15,scheduler=dpm,seed=1,steps=3") / "per_image.csv"
    frame = pd.read_csv(shuffled)
    frame.sample(frac=1, random_state=0).to_csv(shuffled, index=False)
    c = compare(load_sweep([sweep_dir]), "scheduler=ddim", "scheduler=dpm")
    assert c.paired_on == ["steps", "seed"]  # ddim@2 steps pairs with dpm@2 steps, never with dpm@3
    per_image = pd.concat(pd.read_csv(p).assign(**dict(zip(("scheduler", "steps"), _keys(p.parent.name))))
                          for p in sweep_dir.rglob("per_image.csv"))
    on = ["steps", "seed", "prompt_id", "image_index"]
    pairs = per_image[per_image.scheduler == "ddim"].merge(per_image[per_image.scheduler == "dpm"], on=on)
    r = _result(c, "clip_score")
    assert r["pairs"] == len(pairs) == 2 * 2 * 4
    assert r["diff"] == pytest.approx((pairs["clip_score_y"] - pairs["clip_score_x"]).mean(), rel=1e-12)
    # A set metric paired on steps and seed: the two runs of a seed share their starting noise, so the units are
    # seeds (each the mean of its steps' differences); the 4 run pairs were tested as independent.
    fid, runs = _result(c, "fid"), read_metrics(sweep_dir)
    wide = runs.pivot_table(index=["steps", "seed"], columns="scheduler", values="fid")
    per_seed = (wide["dpm"] - wide["ddim"]).groupby(level="seed").mean()
    assert (fid["pairs"], fid["units"], fid["unit"]) == (4, 2, "seeds")
    assert fid["diff"] == pytest.approx(per_seed.mean(), rel=1e-12)
    assert fid["mean_b"] - fid["mean_a"] == pytest.approx(fid["diff"], rel=1e-12)
    from evalrun.report.compare import to_markdown

    md = to_markdown([c])
    assert "| fid | set | 4 (2 seeds) |" in md and "set metrics: seeds" in md


def test_the_two_means_weigh_units_as_their_difference_does(tmp_path: Path) -> None:
    """A prompt with fewer image pairs: the means were over image pairs and B - A over prompts, so the row read
    A 19.66, B 19.18, B - A -0.064."""
    sweep_dir = make_sweep(tmp_path / "s", schedulers=("ddim", "dpm"), steps=(2,), seeds=(0, 1, 2), images_per_prompt=2)
    for run in sweep_dir.glob("*scheduler=dpm*"):  # dpm kept one image of the first prompt only
        frame = pd.read_csv(run / "per_image.csv")
        frame[~((frame["prompt_index"] == 0) & (frame["image_index"] == 1))].to_csv(run / "per_image.csv", index=False)
    r = _result(compare(load_sweep([sweep_dir]), "scheduler=ddim", "scheduler=dpm"), "clip_score")
    frames = {s: pd.concat(pd.read_csv(d / "per_image.csv").assign(seed=int(d.name.split("seed=")[1].split(",")[0]))
                           for d in sweep_dir.glob(f"*scheduler={s},*")) for s in ("ddim", "dpm")}
    pairs = frames["ddim"].merge(frames["dpm"], on=["seed", "prompt_id", "image_index"], suffixes=("_a", "_b"))
    per_prompt = pairs.groupby("prompt_id")[["clip_score_a", "clip_score_b"]].mean()
    assert r["pairs"] == 4 * 2 * 3 - 3 and r["units"] == 4
    assert (r["mean_a"], r["mean_b"]) == pytest.approx(tuple(per_prompt.mean()), rel=1e-12)
    assert r["diff"] == pytest.approx(r["mean_b"] - r["mean_a"], rel=1e-12)
    assert pairs["clip_score_a"].mean() != pytest.approx(per_prompt["clip_score_a"].mean(), rel=1e-9)  # it matters


def test_every_value_of_a_key_is_compared_with_the_first_however_many(tmp_path: Path) -> None:
    # A key with more than 6 values (a 7-sampler or 7-step sweep) was left out of the comparisons, silently.
    sweep_dir = make_sweep(tmp_path / "s", schedulers=("ddim",), steps=(2, 3, 4, 5, 6, 7, 8), seeds=(0,))
    build_report([sweep_dir], out_dir=tmp_path / "r", plots=False, gallery=False)
    got = pd.read_csv(tmp_path / "r" / "comparisons.csv")
    assert sorted(set(zip(got["a"], got["b"]))) == [("steps=2", f"steps={n}") for n in range(3, 9)]


def _keys(name: str) -> tuple[str, int]:
    parts = dict(p.split("=") for p in name.split(","))
    return parts["scheduler"], int(parts["steps"])


def test_no_shared_pairs_and_bad_selectors_fail_clearly(tmp_path: Path) -> None:
    a = make_sweep(tmp_path / "a", models=("sd14",), schedulers=("ddim",), steps=(2,), seeds=(0, 1))
    b = make_sweep(tmp_path / "b", models=("sd15",), schedulers=("ddim",), steps=(2,), seeds=(2, 3))
    sweep = load_sweep([a, b])
    with pytest.raises(EvalrunError, match=r"share no \(prompt, seed\) pairs.*seeds: \[0, 1\] vs \[2, 3\]"):
        compare(sweep, "model=sd14", "model=sd15", metrics=["clip_score"])
    with pytest.raises(EvalrunError, match="share no seeds"):
        compare(sweep, "model=sd14", "model=sd15", metrics=["fid"])
    with pytest.raises(EvalrunError, match="no run matches 'model=sd21': model takes sd14, sd15"):
        compare(sweep, "model=sd14", "model=sd21")
    with pytest.raises(EvalrunError, match="unknown config key 'modle'"):
        compare(sweep, "modle=sd14", "model=sd15")
    with pytest.raises(EvalrunError, match="must not overlap"):
        compare(sweep, "steps=2", "model=sd15")
    with pytest.raises(EvalrunError, match="KEY=VALUE"):
        parse_selector("sd14")
    assert parse_selector("model=sd15, steps=20") == {"model": "sd15", "steps": "20"}
    with pytest.raises(EvalrunError, match="share no"):  # asked for explicitly: the report fails too
        build_report([a, b], out_dir=tmp_path / "r", compare=[("model=sd14", "model=sd15")], plots=False,
                     gallery=False)
    build_report([a, b], out_dir=tmp_path / "r", plots=False, gallery=False)  # default comparisons: skipped, logged


def test_numeric_selectors_match_numbers(tmp_path: Path) -> None:
    sweep = load_sweep([make_sweep(tmp_path / "s", schedulers=("ddim",), steps=(2, 3), seeds=(0,))])
    assert compare(sweep, "steps=2.0,guidance_scale=7.5", "steps=3", metrics=["clip_score"]).results["pairs"][0] == 4


def test_cli_compare_is_reproducible(tmp_path: Path) -> None:
    sweep_dir = make_sweep(tmp_path / "s", models=("sd14", "sd15"), schedulers=("ddim",), steps=(2,), seeds=(0, 1, 2))
    args = [str(sweep_dir), "--compare", "model=sd14", "model=sd15", "--seed", "3", "--resamples", "2000",
            "--no-plots", "--no-gallery"]
    assert report_main([*args, "--out", str(tmp_path / "one")]) == 0
    assert report_main([*args, "--out", str(tmp_path / "two")]) == 0
    one, two = (tmp_path / d / "comparisons.csv" for d in ("one", "two"))
    assert one.read_bytes() == two.read_bytes()
    got = pd.read_csv(one)
    assert list(got["a"].unique()) == ["model=sd14"] and list(got["b"].unique()) == ["model=sd15"]
    assert (got["bootstrap_seed"] == 3).all() and (got["resamples"] == 2000).all()
    md = (tmp_path / "one" / "comparisons.md").read_text()
    assert "B = `model=sd15` vs A = `model=sd14`" in md and "default_rng(3)" in md


@pytest.mark.parametrize("resamples", [0, -5, 1, 999])
def test_too_few_resamples_fail_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, resamples: int) -> None:
    # 0 and -5 raised IndexError/ValueError tracebacks; 1 gave a zero-width interval reported as significant.
    # 3 seeds x 4 prompts: 12 per-image pairs, enough for the bootstrap (not the Student-t of fewer pairs)
    sweep_dir = make_sweep(tmp_path / "s", models=("sd14", "sd15"), schedulers=("ddim",), steps=(2,), seeds=(0, 1, 2))
    out = tmp_path / "r"
    assert report_main([str(sweep_dir), "--resamples", str(resamples), "--out", str(out), "--no-plots",
                        "--no-gallery"]) == 2
    err = capsys.readouterr().err
    assert err == (f"evalrun.report: error: --resamples {resamples}: a bootstrap interval needs at least 1000 "
                   "resamples (fewer give a degenerate or noisy 95% interval); use 1000 or more (default 10000)\n")
    assert not out.exists()
    with pytest.raises(EvalrunError, match=rf"^resamples={resamples}: .*at least 1000"):
        build_report([sweep_dir], out_dir=out, resamples=resamples, plots=False, gallery=False)
    with pytest.raises(EvalrunError, match=rf"^resamples={resamples}: "):
        bootstrap_t_ci(np.arange(12.0), resamples=resamples)
    with pytest.raises(EvalrunError, match=rf"^resamples={resamples}: "):  # below 10 pairs too (Student-t)
        compare(load_sweep([sweep_dir]), "model=sd14", "model=sd15", metrics=["fid"], resamples=resamples)
    assert not out.exists()


def test_bootstrap_minimum_and_seed_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sweep_dir = make_sweep(tmp_path / "s", models=("sd14", "sd15"), schedulers=("ddim",), steps=(2,), seeds=(0, 1))
    assert report_main([str(sweep_dir), "--seed", "-1", "--no-plots", "--no-gallery"]) == 2
    assert capsys.readouterr().err == ("evalrun.report: error: --seed -1: the bootstrap seed must be a whole "
                                       "number >= 0, e.g. 0\n")
    with pytest.raises(EvalrunError, match="^resamples=True: "):
        bootstrap_t_ci([1.0, 2.0], resamples=True)
    with pytest.raises(EvalrunError, match=r"^resamples=1500\.0: "):
        bootstrap_t_ci([1.0, 2.0], resamples=1500.0)
    low, high = bootstrap_t_ci(np.arange(12.0), seed=0, resamples=1000)  # the minimum itself is fine
    assert 3.0 < low < 5.5 < high < 8.0
    assert report_main([str(sweep_dir), "--resamples", "1000", "--no-plots", "--no-gallery"]) == 0
    assert (pd.read_csv(sweep_dir / "report" / "comparisons.csv")["resamples"] == 1000).all()


def test_out_that_is_a_file_fails_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # was a NotADirectoryError traceback, from the first table written under the file
    sweep_dir = make_sweep(tmp_path / "s", schedulers=("ddim",), steps=(2,), seeds=(0,))
    taken = tmp_path / "features.npz"
    taken.write_bytes(b"not a folder")
    assert report_main([str(sweep_dir), "--out", str(taken), "--no-plots"]) == 2
    assert capsys.readouterr().err == (f"evalrun.report: error: --out {taken} is a file, not a folder; give a "
                                       "folder for the report (it is created if missing)\n")
    assert report_main([str(sweep_dir), "--out", str(taken / "report"), "--no-plots"]) == 2
    assert capsys.readouterr().err == (f"evalrun.report: error: --out {taken / 'report'} is under {taken}, which "
                                       "is a file, not a folder; give a folder for the report (it is created if "
                                       "missing)\n")
    assert report_main([str(taken)]) == 2  # a file given as the sweep dir
    assert capsys.readouterr().err == (f"evalrun.report: error: sweep dir {taken} is a file, not a folder; give a "
                                       "sweep's folder (its hydra.sweep.dir) or a run's folder\n")
    assert taken.read_bytes() == b"not a folder"
    assert report_main([str(sweep_dir), "--out", str(tmp_path / "new" / "report"), "--no-plots"]) == 0
    assert (tmp_path / "new" / "report" / "report.md").is_file()
