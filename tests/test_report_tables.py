"""Report tables: numbers equal plain pandas on the per-run CSVs; best marks follow run.json; LaTeX is a
consistent table float (compiled with pdflatex in test_latex_compile.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from evalrun.errors import EvalrunError
from evalrun.report import build_report, load_sweep
from evalrun.report.__main__ import main as report_main
from evalrun.report.latex import latex_escape
from evalrun.report.tables import pivot_table, summary_table
from evalrun.report.writers import to_markdown
from report_synthetic import PROMPTS, clip_value, config, make_run, make_sweep, read_metrics

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    return make_sweep(tmp_path / "sweep")


def _pandas_stats(frame: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    return frame.groupby(keys)[metric].agg(["mean", "std", "count"]).reset_index()


def _check_csv(path: Path, expected: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    got = pd.read_csv(path)
    merged = got.merge(expected, on=keys, validate="one_to_one", suffixes=("", "_pd"))
    assert len(merged) == len(expected) == len(got)
    np.testing.assert_allclose(merged["mean"], merged["mean_pd"], rtol=1e-12)
    np.testing.assert_allclose(merged["std"], merged["std_pd"], rtol=1e-12)
    assert (merged["n"] == merged["count"]).all()
    return got


def test_tables_equal_pandas_on_the_run_csvs(sweep_dir: Path, tmp_path: Path) -> None:
    written = build_report([sweep_dir], plots=False, gallery=False)
    out = sweep_dir / "report"
    assert all(p.is_relative_to(out) for paths in written.values() for p in paths)
    runs = read_metrics(sweep_dir)
    for metric in ("clip_score", "fid", "kid_mean", "mystery"):
        _check_csv(out / "tables" / f"{metric}_by_scheduler_x_steps.csv",
                   _pandas_stats(runs, ["scheduler", "steps"], metric), ["scheduler", "steps"])
    summary = pd.read_csv(out / "tables" / "summary.csv")
    for metric, part in summary.groupby("metric"):
        expected = _pandas_stats(runs, ["scheduler", "steps"], metric)
        merged = part.merge(expected, on=["scheduler", "steps"], suffixes=("", "_pd"))
        np.testing.assert_allclose(merged["mean"], merged["mean_pd"], rtol=1e-12)
        np.testing.assert_allclose(merged["std"], merged["std_pd"], rtol=1e-12)
    assert set(summary["metric"]) == {"clip_score", "fid", "kid_mean", "mystery"}  # kid_std: a spread, left out
    assert not (out / "tables" / "kid_std_by_scheduler_x_steps.csv").exists()


def test_best_cell_per_column_follows_higher_is_better(sweep_dir: Path) -> None:
    build_report([sweep_dir], plots=False, gallery=False)
    tables = sweep_dir / "report" / "tables"
    for metric, pick in (("clip_score", "idxmax"), ("fid", "idxmin"), ("kid_mean", "idxmin")):
        got = pd.read_csv(tables / f"{metric}_by_scheduler_x_steps.csv")
        for steps, column in got.groupby("steps"):
            best = column.loc[getattr(column["mean"], pick)(), "scheduler"]
            assert column.loc[column["top"], "scheduler"].tolist() == [best], (metric, steps)
            assert not (column["best"] & ~column["top"]).any()  # bold only ever on the top cell
            assert column.loc[column["top"], "test"].str.len().iloc[0] > 0  # the test against the runner-up
    mystery = pd.read_csv(tables / "mystery_by_scheduler_x_steps.csv")  # no higher_is_better entry
    assert not mystery["best"].any() and not mystery["top"].any()
    fid = pd.read_csv(tables / "fid_by_scheduler_x_steps.csv")
    md = (tables / "fid_by_scheduler_x_steps.md").read_text()
    assert md.count("**") == 2 * int(fid["best"].sum()) and "lower is better" in md
    assert "significantly better than the runner-up" in md
    spread = summary_table(load_sweep([sweep_dir]), ["kid_std"])  # asked for explicitly: shown, never marked
    assert not spread.stats["best"].any() and not spread.stats["top"].any()


def test_cells_show_mean_std_and_dash_for_a_single_seed(tmp_path: Path) -> None:
    sweep_dir = make_sweep(tmp_path / "s", seeds=(0, 1, 2))
    make_run(tmp_path / "s" / "extra", config("sd15", "euler", 2, 0))  # euler: one seed only
    sweep = load_sweep([sweep_dir])
    table = pivot_table(sweep, ["scheduler"], ["steps"], "fid", {"fid": ".1f"})
    euler = table.stats[table.stats["scheduler"] == "euler"].iloc[0]
    assert euler["n"] == 1 and np.isnan(euler["std"])
    assert euler["cell"] == f"{euler['mean']:.1f} ± – (n=1)"
    ddim = table.stats[(table.stats["scheduler"] == "ddim") & (table.stats["steps"] == 2)].iloc[0]
    assert ddim["cell"] == f"{ddim['mean']:.1f} ± {ddim['std']:.1f} (n=3)"  # n varies, so every cell shows it
    md = to_markdown(table)
    euler_row = next(line for line in md.splitlines() if line.startswith("| euler"))
    assert euler_row.rstrip(" |").endswith("–")  # euler has no steps=3 run: an empty cell
    uniform = pivot_table(load_sweep([make_sweep(tmp_path / "u")]), ["scheduler"], ["steps"], "clip_score")
    assert "(n=" not in "".join(uniform.stats["cell"]) and "n=2 seeds" in uniform.note


def _tabular_rows(tex: str) -> tuple[int, list[str]]:
    """Declared column count and the data/header rows of the single tabular in ``tex``."""
    spec = re.search(r"\\begin\{tabular\}\{((?:[^{}]|\{[^{}]*\})*)\}", tex)
    assert spec, tex
    ncols = len(re.findall(r"[lcrpS]", re.sub(r"\[[^]]*\]", "", spec.group(1))))
    body = tex[spec.end():tex.index(r"\end{tabular}")]
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert rule in body
    body = re.sub(r"\\(toprule|midrule|bottomrule)|\\cmidrule\([lr]*\)\{[0-9-]+\}", "", body)
    rows = [r.strip() for r in body.split(r"\\") if r.strip()]
    return ncols, rows


def _row_width(row: str) -> int:
    cells = re.split(r"(?<!\\)&", row)
    return sum(int(m.group(1)) if (m := re.search(r"\\multicolumn\{(\d+)\}", c)) else 1 for c in cells)


def test_latex_is_a_complete_table_float(sweep_dir: Path) -> None:
    build_report([sweep_dir], plots=False, gallery=False)
    texs = sorted((sweep_dir / "report" / "tables").glob("*.tex"))
    assert {p.stem for p in texs} >= {"summary", "clip_score_by_scheduler_x_steps", "clip_score_by_category",
                                      "clip_score_by_challenge"}
    for tex_path in texs:
        tex = tex_path.read_text()
        body = tex.splitlines()[1:]  # the first line is a comment naming the packages
        assert body[0] == r"\begin{table}[htbp]" and body[-1] == r"\end{table}", tex
        assert tex.count(r"\caption") == 1
        assert ("significantly better than the runner-up" in tex) != tex_path.stem.startswith("mystery")
        label = re.search(r"\\label\{(tab:[A-Za-z0-9.:-]+)\}", tex)
        assert label and label.group(1) == "tab:" + tex_path.stem.replace("_", "-")
        assert "S[table-format=" in tex and r"\sisetup{" in tex
        ncols, rows = _tabular_rows(tex)
        assert rows and all(_row_width(r) == ncols for r in rows), (tex_path.name, ncols, rows)
        assert "_" not in re.sub(r"\\_", "", "\n".join(body))  # every underscore escaped
        assert "%" not in re.sub(r"\\%", "", "\n".join(body))  # no stray comment character
    category = (sweep_dir / "report" / "tables" / "clip_score_by_category.tex").read_text()
    assert r"Food \& Beverage" in category and "{Category}" in category  # display name as the spanner
    assert latex_escape("50% a_b & c") == r"50\% a\_b \& c"
    assert latex_escape("<x> | ±") == r"\textless{}x\textgreater{} \textbar{} $\pm$"
    assert latex_escape("ε Ω Α é 漢") == r"$\epsilon$ $\Omega$ A é ?"  # pdflatex cannot set CJK without packages
    summary = (sweep_dir / "report" / "tables" / "summary.tex").read_text()
    assert r"{CLIP score $\uparrow$}" in summary and "Scheduler & Steps" in summary  # labels, not raw keys


def test_category_and_challenge_breakdown(sweep_dir: Path) -> None:
    build_report([sweep_dir], plots=False, gallery=False)
    per_image = pd.concat(pd.read_csv(p).assign(run_dir=str(p.parent)) for p in sweep_dir.rglob("per_image.csv"))
    runs = read_metrics(sweep_dir).assign(run_dir=lambda f: f["run_dir"])
    per_image["run_dir"] = per_image["run_dir"].map(lambda d: str(Path(d).resolve()))
    for facet in ("category", "challenge"):
        per_run = per_image.groupby(["run_dir", facet])["clip_score"].mean().reset_index()
        per_run = per_run.merge(runs[["run_dir", "scheduler", "steps"]], on="run_dir")
        expected = _pandas_stats(per_run, ["scheduler", "steps", facet], "clip_score")
        got = _check_csv(sweep_dir / "report" / "tables" / f"clip_score_by_{facet}.csv", expected,
                         ["scheduler", "steps", facet])
        assert got[facet].notna().all()  # prompts without a challenge are left out, not a NaN column
        for _, column in got.groupby(facet):
            assert column["top"].sum() == 1 and column.loc[column["top"], "mean"].iloc[0] == column["mean"].max()
            assert column["best"].sum() <= 1 and not (column["best"] & ~column["top"]).any()


def test_merged_sweeps_duplicates_and_incomplete_runs(tmp_path: Path) -> None:
    a = make_sweep(tmp_path / "a", seeds=(0, 1))
    b = make_sweep(tmp_path / "b", seeds=(1, 2))  # seed 1 repeats a's runs: counted once
    make_run(tmp_path / "b" / "crashed", config("sd15", "ddim", 2, 7), status="running")
    sweep = load_sweep([a, b])
    assert len(sweep.runs) == 2 * 2 * 3 and 7 not in set(sweep.runs["seed"])
    assert sweep.keys == ["scheduler", "steps"]  # scheduler_class is an alias of scheduler, seed is not a key
    written = build_report([a, b], out_dir=tmp_path / "merged", plots=False, gallery=False)
    assert written["tables"][0].parent == tmp_path / "merged" / "tables"
    runs = read_metrics(a, b).drop_duplicates(subset=["scheduler", "steps", "seed"])
    _check_csv(tmp_path / "merged" / "tables" / "fid_by_scheduler_x_steps.csv",
               _pandas_stats(runs, ["scheduler", "steps"], "fid"), ["scheduler", "steps"])
    assert "crashed" in (tmp_path / "merged" / "report.md").read_text()


def test_columns_resolved_from_the_seed_are_not_keys(tmp_path: Path) -> None:
    # kid.seed: null is recorded as the run's seed and declared to follow it (run.json's seed_columns);
    # it must not split configurations into n=1 groups.
    for scheduler in ("ddim", "dpm"):
        for seed in (0, 1, 2):
            make_run(tmp_path / "s" / f"{scheduler}-{seed}", config("sd15", scheduler, 2, seed, **{"kid.seed": seed}))
    sweep = load_sweep([tmp_path / "s"])
    assert sweep.keys == ["scheduler"] and sweep.seed_columns == ["seed", "kid.seed"]
    table = summary_table(sweep, ["fid"])
    assert table.stats["n"].tolist() == [3, 3] and "kid.seed" not in sweep.constants()


def test_pivot_splits_rows_by_keys_that_vary_but_are_not_rows_or_cols(tmp_path: Path) -> None:
    # scheduler x guidance_scale x steps x 2 seeds, --rows scheduler --cols steps: guidance_scale must not be pooled.
    for scheduler in ("ddim", "dpm"):
        for guidance in (3.0, 7.5):
            for steps in (2, 3):
                for seed in (0, 1):
                    make_run(tmp_path / "s" / f"g={guidance},scheduler={scheduler},seed={seed},steps={steps}",
                             config("sd15", scheduler, steps, seed, guidance_scale=guidance),
                             clip=lambda *a, g=guidance: clip_value(*a) + g)  # guidance changes the score
    sweep = load_sweep([tmp_path / "s"])
    assert set(sweep.keys) == {"scheduler", "guidance_scale", "steps"}
    table = pivot_table(sweep, ["scheduler"], ["steps"], "clip_score")
    assert table.row_keys == ["scheduler", "guidance_scale"] and table.col_keys == ["steps"]
    assert sorted(table.row_labels()) == [("ddim", 3.0), ("ddim", 7.5), ("dpm", 3.0), ("dpm", 7.5)]
    assert "rows also split by Guidance, which varies" in table.note and "n=2 seeds" in table.note
    keys = ["scheduler", "guidance_scale", "steps"]
    expected = _pandas_stats(read_metrics(tmp_path / "s"), keys, "clip_score")
    merged = table.stats.merge(expected, on=keys, validate="one_to_one", suffixes=("", "_pd"))
    assert len(merged) == len(expected) == len(table.stats) == 8
    np.testing.assert_allclose(merged["mean"], merged["mean_pd"], rtol=1e-12)
    np.testing.assert_allclose(merged["std"], merged["std_pd"], rtol=1e-12)
    assert (merged["n"] == 2).all() and (merged["count"] == 2).all()
    md = to_markdown(table)
    header = next(line for line in md.splitlines() if line.startswith("| "))
    assert [c.strip() for c in header.strip("|").split("|")] == ["Scheduler", "Guidance", "Steps = 2", "Steps = 3"]
    assert sum(line.startswith("| ddim ") for line in md.splitlines()) == 2
    # an alias of a row key (scheduler_class) adds nothing; cols=[guidance_scale, steps] leaves nothing open
    alias = pivot_table(sweep, ["scheduler_class"], ["guidance_scale", "steps"], "clip_score")
    assert alias.row_keys == ["scheduler_class"] and "also split" not in alias.note


def test_rows_cols_metric_and_format_options(tmp_path: Path) -> None:
    sweep_dir = make_sweep(tmp_path / "s", models=("sd14", "sd15"))
    build_report([sweep_dir], rows=["model", "scheduler"], cols=["steps"], metrics=["fid"], formats={"fid": ".3f"},
                 compare=[("model=sd14", "model=sd15")], plots=False, gallery=False)
    tables = sweep_dir / "report" / "tables"
    got = _check_csv(tables / "fid_by_model_scheduler_x_steps.csv",
                     _pandas_stats(read_metrics(sweep_dir), ["model", "scheduler", "steps"], "fid"),
                     ["model", "scheduler", "steps"])
    assert all(re.fullmatch(r"\d+\.\d{3} ± \d+\.\d{3}", c) for c in got["cell"])
    assert not (tables / "clip_score_by_model_scheduler_x_steps.csv").exists()
    with pytest.raises(EvalrunError, match="unknown config key 'shceduler'.*valid: model"):
        build_report([sweep_dir], rows=["shceduler"], plots=False, gallery=False)
    with pytest.raises(EvalrunError, match="unknown metric 'fdi'"):
        build_report([sweep_dir], metrics=["fdi"], plots=False, gallery=False)
    with pytest.raises(EvalrunError, match="no complete runs"):
        build_report([tmp_path / "s" / "model=sd14,scheduler=ddim,seed=0,steps=2" / "images"])


def test_cli_bare_invocation_writes_everything(sweep_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert report_main([str(sweep_dir)]) == 0
    out = sweep_dir / "report"
    for name in ("report.md", "index.html", "comparisons.md", "comparisons.csv", "tables/summary.tex",
                 "tables/fid_by_scheduler_x_steps.md", "plots/fid_vs_steps.png", "plots/fid_vs_steps.svg"):
        assert (out / name).stat().st_size > 0, name
    printed = capsys.readouterr().out
    assert "### Summary" not in printed  # paths, not the report
    assert f"report: {out / 'report.md'}" in printed and f"wrote tables: {out / 'tables' / 'summary.tex'}" in printed
    assert report_main([str(sweep_dir), "--rows", "nope"]) == 2
    assert "unknown config key 'nope'" in capsys.readouterr().err
    first = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert report_main([str(sweep_dir)]) == 0  # re-running rebuilds identical artefacts
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.suffix != ".png"} == {
        p: b for p, b in first.items() if p.suffix != ".png"}


def test_python_dash_m_entry_point(sweep_dir: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "evalrun.report", str(sweep_dir), "--no-plots", "--no-gallery",
                           "--format", "fid=.1f"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (sweep_dir / "report" / "tables" / "summary.md").exists() and "wrote tables" in done.stdout


def test_plots_png_and_svg_headless_and_reproducible(tmp_path: Path) -> None:
    sweep_dir = make_sweep(tmp_path / "s", models=("sd14", "sd15"), schedulers=("ddim",), steps=(2, 3, 5))
    make_run(sweep_dir / "lonely", config("sd14", "dpm", 4, 0))  # a line with one run: no error bar
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = build_report([sweep_dir], metrics=["fid"], hue=["scheduler"], plots=True, gallery=False)["plots"]
    assert [p.name for p in first] == ["fid_vs_steps.png", "fid_vs_steps.svg"]
    assert Image.open(first[0]).format == "PNG" and b"<svg" in first[1].read_bytes()
    svg = first[1].read_bytes()
    build_report([sweep_dir], metrics=["fid"], hue=["scheduler"], gallery=False)
    assert first[1].read_bytes() == svg
    assert b"Scheduler, Model" in svg  # legend title: hue first, then the other varying keys (never pooled)
    with pytest.raises(EvalrunError, match="not numeric"):
        build_report([sweep_dir], x="model", gallery=False)


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_end_to_end_tiny_sweep_2_schedulers_x_2_steps_x_2_seeds(tmp_path: Path) -> None:
    from conftest import cli

    sweep_dir = tmp_path / "sweep"
    cli("-m", "scheduler=ddim,dpm", "steps=2,3", "seed=0,1", f"hydra.sweep.dir={sweep_dir}")
    assert len(list(sweep_dir.rglob("run.json"))) == 8
    written = build_report([sweep_dir], seed=0)
    runs = read_metrics(sweep_dir)
    record = json.loads(next(sweep_dir.rglob("run.json")).read_text())
    for metric in record["metric_columns"]:
        if record["columns"][metric]["kind"] != "score":
            continue
        _check_csv(sweep_dir / "report" / "tables" / f"{metric}_by_scheduler_x_steps.csv",
                   _pandas_stats(runs, ["scheduler", "steps"], metric), ["scheduler", "steps"])
    for tex in (sweep_dir / "report" / "tables").glob("*.tex"):
        ncols, rows = _tabular_rows(tex.read_text())
        assert all(_row_width(r) == ncols for r in rows)
    comparisons = pd.read_csv(sweep_dir / "report" / "comparisons.csv")
    assert set(zip(comparisons["a"], comparisons["b"])) == {("scheduler=ddim", "scheduler=dpm"), ("steps=2", "steps=3")}
    assert (comparisons.loc[comparisons["kind"] == "per-image", "pairs"] == 2 * 2 * 6).all()  # 2 x 2 seeds x 6 prompts
    again = build_report([sweep_dir], out_dir=tmp_path / "again", seed=0, plots=False, gallery=False)
    assert again["comparisons"][1].read_bytes() == written["comparisons"][1].read_bytes()
    html = written["gallery"][0].read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) == 8 * 6 and all((written["gallery"][0].parent / unquote(s)).exists() for s in srcs)


def test_summary_counts_a_repeated_config_and_seed_once_as_the_report_does(tmp_path: Path,
                                                                             caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from evalrun.aggregate import SUMMARY_FILE, refresh, write_summary

    def shifted(*args):  # the repeat scored differently: counted twice, it would move the mean
        return clip_value(*args) + 5.0

    sweep_dir = make_sweep(tmp_path / "s", schedulers=("ddim", "dpm"), steps=(2,), seeds=(0, 1))
    # the same sweep run again into this dir with the overrides spelled in another order: same config, same seed
    repeat = make_run(sweep_dir / "seed=0,scheduler=ddim,steps=2,model=sd15", config("sd15", "ddim", 2, 0),
                      clip=shifted)
    with caplog.at_level(logging.WARNING):
        write_summary(sweep_dir)
    assert (f"1 run(s) repeat the config and seed of an earlier one and are counted once: {repeat.resolve()}"
            in caplog.text)
    firsts = read_metrics(sweep_dir).pipe(lambda f: f[f["run_dir"] != str(repeat.resolve())])
    assert len(firsts) == 4
    report = summary_table(load_sweep([sweep_dir]), ["clip_score", "fid"]).stats.set_index(["scheduler", "metric"])

    def check(summary: pd.DataFrame) -> None:
        summary = summary.set_index("scheduler")
        assert summary["n_runs"].tolist() == [2, 2] and summary["seeds"].astype(str).tolist() == ["0 1", "0 1"]
        for metric in ("clip_score", "fid"):
            expected = firsts.groupby("scheduler")[metric].agg(["mean", "std"])
            np.testing.assert_allclose(summary[f"{metric}_mean"], expected["mean"], rtol=1e-12)
            np.testing.assert_allclose(summary[f"{metric}_std"], expected["std"], rtol=1e-12)
            assert summary[f"{metric}_n"].tolist() == [2, 2]
            for scheduler in ("ddim", "dpm"):  # the same mean as the report's summary table
                assert summary.loc[scheduler, f"{metric}_mean"] == pytest.approx(
                    report.loc[(scheduler, metric), "mean"], rel=1e-12)
                assert report.loc[(scheduler, metric), "n"] == 2

    check(pd.read_csv(sweep_dir / SUMMARY_FILE))
    # Refreshed job by job in another order (the repeat finishing first): the same run is kept.
    (sweep_dir / ".runs.jsonl").unlink()
    (sweep_dir / SUMMARY_FILE).unlink()
    for run_dir in [repeat, *sorted(d for d in sweep_dir.iterdir() if d.is_dir() and d != repeat)]:
        refresh(sweep_dir, run_dir)
    check(pd.read_csv(sweep_dir / SUMMARY_FILE))


def test_a_failed_job_that_finishes_on_a_rerun_leaves_the_failed_list_in_a_relative_sweep_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The index keeps the latest entry per run dir: a failed entry was keyed by the dir as given (Hydra's
    default sweep dirs are relative) and a complete one by its absolute path, so after the job's re-run
    succeeded it stayed in failed_runs.csv while the summary counted it."""
    from evalrun.aggregate import FAILED_RUNS_FILE, SUMMARY_FILE, refresh
    from evalrun.runs import FAILED_FILE, record_failure

    monkeypatch.chdir(tmp_path)
    sweep_dir = Path("outputs") / "s"
    make_run(sweep_dir / "seed=0", config("sd15", "ddim", 2, 0))
    refresh(sweep_dir, sweep_dir / "seed=0")
    record_failure(sweep_dir / "seed=1", RuntimeError("boom"))
    refresh(sweep_dir, sweep_dir / "seed=1")
    assert "boom" in (sweep_dir / FAILED_RUNS_FILE).read_text()
    (sweep_dir / "seed=1" / FAILED_FILE).unlink()  # the re-run clears it and finishes
    make_run(sweep_dir / "seed=1", config("sd15", "ddim", 2, 1))
    refresh(sweep_dir, sweep_dir / "seed=1")
    assert not (sweep_dir / FAILED_RUNS_FILE).exists()
    assert pd.read_csv(sweep_dir / SUMMARY_FILE)["n_runs"].tolist() == [2]


def test_aggregate_refuses_a_file_or_a_missing_sweep_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # a file was a NotADirectoryError traceback (and a missing dir was created, holding an empty index)
    from evalrun.aggregate import main as aggregate_main

    taken = tmp_path / "features.npz"
    taken.write_bytes(b"not a folder")
    assert aggregate_main([str(taken)]) == 1
    assert capsys.readouterr().err == (f"evalrun.aggregate: error: sweep dir {taken} is a file, not a folder; give "
                                       "a sweep's folder (its hydra.sweep.dir) or a run's folder\n")
    assert taken.read_bytes() == b"not a folder"
    missing = tmp_path / "no_such_sweep"
    assert aggregate_main([str(missing)]) == 1
    assert capsys.readouterr().err == (f"evalrun.aggregate: error: sweep dir {missing} does not exist; give a "
                                       "sweep's folder (its hydra.sweep.dir) or a run's folder\n")
    assert not missing.exists()


def test_a_numeric_grid_of_int_and_float_keys_gets_the_paired_test(tmp_path: Path) -> None:
    """steps (int) x guidance_scale (float): a row of the cell stats holds both as floats, so steps=2 read
    as "2.0" and no cell found its samples: the best cell fell back to the unpaired t intervals. Here the
    best cell is the runner-up plus a constant 0.5 per image (paired: significant; intervals: overlap)."""
    for guidance in (5.0, 7.5):
        for steps in (2, 3):
            for seed in (0, 1, 2):
                shift = {(5.0, 2): 0.5, (7.5, 2): 0.0}.get((guidance, steps), -3.0)
                make_run(tmp_path / "s" / f"g={guidance},seed={seed},steps={steps}",
                         config("sd15", "ddim", steps, seed, guidance_scale=guidance),
                         clip=lambda m, sc, st, sd, p, i, shift=shift: clip_value(m, sc, 2, sd, p, i) + shift)
    sweep = load_sweep([tmp_path / "s"])
    for table in (summary_table(sweep, ["clip_score"]), pivot_table(sweep, ["guidance_scale"], ["steps"], "clip_score")):
        best = table.stats[table.stats["best"]]
        assert len(best) == 1 and best.iloc[0]["steps"] == 2 and best.iloc[0]["guidance_scale"] == 5.0
        assert best.iloc[0]["test"].startswith("paired t, 4 prompts"), best.iloc[0]["test"]  # 12 image pairs


def test_markdown_cells_render_as_the_text_the_runs_hold(tmp_path: Path) -> None:
    """A prompt category such as ``<Artifacts>`` was raw HTML to a Markdown renderer (the cell rendered empty);
    ``*``, ``_``, ``[]`` and ``|`` formatted or split it. Rendered by a CommonMark parser (with GFM tables), every
    cell reads as the text the runs hold."""
    from markdown_it import MarkdownIt

    odd = ["<Artifacts> & *odd*", "_under_ snake_case [link](x) a|b `tick` back\\slash"]
    prompts = [dict(p, category=odd[i % 2]) for i, p in enumerate(PROMPTS)]
    sweep = make_sweep(tmp_path / "sweep", prompts=prompts, seeds=(0,))
    build_report([sweep], plots=False, gallery=False)
    tokens = MarkdownIt("commonmark").enable("table").parse(
        (sweep / "report" / "tables" / "clip_score_by_category.md").read_text())
    start, end = (next(i for i, t in enumerate(tokens) if t.type == kind) for kind in ("table_open", "table_close"))
    cells = [t.children for t in tokens[start:end] if t.type == "inline"]
    texts = {"".join(c.content for c in children) for children in cells}
    assert {f"Category = {text}" for text in odd} <= texts, texts  # the breakdown's column headers
    assert {c.type for children in cells for c in children} == {"text"}  # no HTML, emphasis, link or code
