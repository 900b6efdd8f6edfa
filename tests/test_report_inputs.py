"""What the report reads from the user and the runs: options that name a key or metric twice or not at all,
labels files that are broken or mistyped, per_image.csv text that pandas would read as missing, and a
damaged per_image.csv. Each mistake is one line (exit 2) or one warning; the report still builds."""

from __future__ import annotations

import html
import logging
from pathlib import Path

import pandas as pd
import pytest

from evalrun.errors import EvalrunError
from evalrun.report import build_report
from evalrun.report.__main__ import main as report_main
from evalrun.report.labels import load_labels
from report_synthetic import PROMPTS, config, make_run, make_sweep


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 schedulers x 2 steps, one seed: only read by the tests here (each writes its report elsewhere)."""
    return make_sweep(tmp_path_factory.mktemp("inputs") / "sweep", steps=(2, 3), seeds=(0,))


def _refused(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    assert report_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("evalrun.report: error: "), err
    return err


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize("option", [["--hue", "scheduler", "scheduler"], ["--rows", "scheduler", "scheduler"],
                                    ["--cols", "steps", "steps"]])
def test_a_key_given_twice_is_refused_in_one_line(sweep_dir: Path, tmp_path: Path, option: list[str],
                                                  capsys: pytest.CaptureFixture) -> None:
    err = _refused([str(sweep_dir), "--out", str(tmp_path / "r"), *option], capsys)
    assert f"{option[0]} names '{option[1]}' more than once" in err


def test_a_key_given_twice_in_one_compare_selector_is_refused(sweep_dir: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    err = _refused([str(sweep_dir), "--out", str(tmp_path / "r"), "--compare", "steps=2,steps=3", "steps=3"], capsys)
    assert "comparison selector 'steps=2,steps=3' names 'steps' more than once" in err  # it quoted 'steps=3' twice


@pytest.mark.parametrize("refused", [["--compare", "scheduler=ddim", "scheduler=nope"], ["--x", "scheduler"]])
def test_a_refused_option_leaves_the_previous_report_as_it_was(sweep_dir: Path, tmp_path: Path, refused: list[str],
                                                               capsys: pytest.CaptureFixture) -> None:
    """The tables were written before --compare and --x were checked: the folder mixed two builds, and the
    new files, never listed in .report_files, were never removed."""
    out = tmp_path / "r"
    assert report_main([str(sweep_dir), "--out", str(out), "--metric", "fid", "--no-gallery", "--no-plots"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    _refused([str(sweep_dir), "--out", str(out), "--metric", "clip_score", "--no-gallery", *refused], capsys)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_format_for_no_metric_is_refused(sweep_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = _refused([str(sweep_dir), "--out", str(tmp_path / "r"), "--format", "clip=.2f"], capsys)
    assert "unknown --format metric 'clip'; valid: clip_score" in err


def test_a_metric_named_twice_is_reported_once(sweep_dir: Path, tmp_path: Path) -> None:
    written = build_report([sweep_dir], tmp_path / "r", metrics=["fid", "clip_score", "fid"], plots=False,
                           gallery=False, compare=[("steps=2", "steps=3")], resamples=1000)
    names = [p.name for p in written["tables"] if p.suffix == ".csv"]
    assert names.count("fid_by_scheduler_x_steps.csv") == 1
    assert pd.read_csv(tmp_path / "r" / "tables" / "summary.csv")["metric"].value_counts().max() == 4  # 4 configs
    comparisons = pd.read_csv(tmp_path / "r" / "comparisons.csv")
    assert not comparisons.duplicated(["a", "b", "metric"]).any()


# ----------------------------------------------------------------------------- labels files
@pytest.mark.parametrize("content, message", [
    (b"a: \xff\xfe\n", "is not UTF-8 text"),
    (b"a: [1\nb: 2\n", r"is not valid YAML: expected ',' or '\]', but got ':' at line 2, column 2$"),
    (b"clip_score: {label: 3}\n", r"clip_score.label must be text, got int 3"),
    (b"clip_score: {label: CLIP, unit: [x]}\n", r"clip_score.unit must be text, got list \['x'\]"),
])
def test_a_broken_labels_file_fails_in_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "labels.yaml"
    path.write_bytes(content)
    with pytest.raises(EvalrunError, match=message) as info:
        load_labels(path)
    assert "\n" not in str(info.value)


def test_a_labels_folder_is_named_as_a_folder(sweep_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "labels.yaml").mkdir()
    err = _refused([str(sweep_dir), "--out", str(tmp_path / "r"), "--labels", str(tmp_path / "labels.yaml")], capsys)
    assert "is a folder, not a YAML file" in err


def test_labels_for_no_key_or_value_are_warned_about(sweep_dir: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    labels = {"schedular": "Sampler", "scheduler": {"values": {"ddmi": "DDIM", "dpm": "DPM"}}, "fid": "FID-10k",
              "category": {"values": {"Animals": "Fauna"}}, "steps": {"values": {2: "two"}}}
    with caplog.at_level(logging.WARNING, logger="evalrun.report"):
        build_report([sweep_dir], tmp_path / "r", metrics=["fid"], labels=labels, plots=False, gallery=False,
                     compare=[], resamples=1000)
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("labels:")]
    assert warned == ["labels: 'schedular' names no column of these runs and is unused; did you mean 'scheduler'?",
                      "labels: scheduler has no value 'ddmi' in these runs; did you mean 'ddim'?"]


# ----------------------------------------------------------------------------- per_image.csv
def test_text_that_pandas_reads_as_missing_is_kept(tmp_path: Path) -> None:
    prompts = [{**PROMPTS[0], "prompt": "NA", "category": "None", "challenge": "null"},
               {**PROMPTS[1], "prompt": "nan", "category": "NA", "challenge": "nan"},
               {**PROMPTS[2], "prompt": "null", "category": "None", "challenge": None}]
    sweep_dir = tmp_path / "s"
    for scheduler in ("ddim", "dpm"):
        make_run(sweep_dir / scheduler, config(scheduler=scheduler), prompts=prompts)
    written = build_report([sweep_dir], plots=False, resamples=1000)
    by_category = pd.read_csv(sweep_dir / "report" / "tables" / "clip_score_by_category.csv", keep_default_na=False)
    assert sorted(set(by_category["category"])) == ["NA", "None"]
    by_challenge = pd.read_csv(sweep_dir / "report" / "tables" / "clip_score_by_challenge.csv", keep_default_na=False)
    assert sorted(set(by_challenge["challenge"])) == ["nan", "null"]  # the empty cell (None) stays missing
    page = written["gallery"][0].read_text()
    assert all(f"<p>{text}</p>" in page for text in ("NA", "nan", "null"))


def test_a_damaged_per_image_csv_leaves_that_run_out_with_a_warning(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    sweep_dir = make_sweep(tmp_path / "s", steps=(2,), seeds=(0, 1, 2))
    emptied, cut, short, bad = (next(sweep_dir.glob(f"*scheduler={s},seed={n}*")) / "per_image.csv"
                                for s, n in (("ddim", 0), ("dpm", 0), ("dpm", 1), ("dpm", 2)))
    emptied.write_text("")
    cut.write_text(cut.read_text()[:-30])  # cut inside its last row
    short.write_text(short.read_text()[:-30] + "\n")  # a last row without its seed, image index and scores
    bad.write_bytes(bad.read_bytes().replace(b"cube", b"\xff\xfe"))
    with caplog.at_level(logging.WARNING, logger="evalrun.report"):
        written = build_report([sweep_dir], plots=False, resamples=1000)
    unreadable = [r.getMessage() for r in caplog.records if "is unreadable" in r.getMessage()]
    assert [m.split(" is unreadable")[0] for m in unreadable] == [str(emptied), str(cut), str(short), str(bad)]
    assert all("\n" not in m for m in unreadable)
    page = written["gallery"][0].read_text()
    assert page.count("<img") >= len(PROMPTS)  # the intact run's images are still shown
    assert (sweep_dir / "report" / "tables" / "clip_score_by_category.csv").exists()


# ----------------------------------------------------------------------------- plots
def test_long_values_are_cut_in_plot_legends_only(tmp_path: Path) -> None:
    from evalrun.report.plots import plot_metric

    long_value = '{"category": ["Animals", "Food & Beverage"], "challenge": ["Basic", "Imagination"]}'
    runs = pd.DataFrame({"steps": [2, 3, 2, 3], "fid": [3.0, 2.0, 4.0, 1.0],
                         "prompts_filter": [long_value] * 2 + ["{}"] * 2})
    svg = plot_metric(runs, "fid", "steps", ["prompts_filter"], False, tmp_path / "fid_vs_steps")[1].read_text()
    text = html.unescape(svg)
    assert long_value not in text and '{"category": ["Animals", "Food & Bevera…' in text


def test_a_user_format_signs_the_mean_only_and_never_pads_cells(tmp_path: Path) -> None:
    """``--format fid=+.1f`` printed ``± +7.5``; a width (``>10.1f``) padded cells, and bold became
    ``**     107.7**``, which Markdown does not render."""
    from evalrun.report.formats import format_cell, metric_format

    assert format_cell(12.345, 7.5, 3, metric_format("fid", [], {"fid": "+.1f"})) == "+12.3 ± 7.5"
    assert metric_format("fid", [], {"fid": ">10.1f"}) == metric_format("fid", [], {"fid": "*^010.1f"}) == ".1f"
    sweep = make_sweep(tmp_path / "sweep", steps=(2,), seeds=(0, 1, 2))
    for spec in ("+.1f", ">10.1f"):
        build_report([sweep], tmp_path / spec, metrics=["fid"], formats={"fid": spec}, plots=False, gallery=False)
        text = (tmp_path / spec / "tables" / "summary.md").read_text(encoding="utf-8")
        cells = [c.strip() for line in text.splitlines() if "±" in line for c in line.split("|") if "±" in c]
        assert cells and all("± +" not in c and "  " not in c.strip("*") for c in cells), cells
        tex = (tmp_path / spec / "tables" / "summary.tex").read_text(encoding="utf-8")
        assert "\\pm +" not in tex and "± +" not in tex
