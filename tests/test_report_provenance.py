"""Provenance that differs within a configuration: the pure comparison, and how the report shows it."""

from __future__ import annotations

import copy
from pathlib import Path

from evalrun.report import build_report, load_sweep
from evalrun.report.provenance import describe, differing_fields, group_differences, provenance_fields
from report_synthetic import PROVENANCE, config, make_run, make_sweep

RUN = {
    "versions": {"torch": "2.14.1", "diffusers": "0.42.1"},
    "environment": {"device": "cuda:0", "gpu_name": "NVIDIA H100", "platform": "Linux-6.1", "evalrun_git": "abc"},
    "scheduler_config": {"class": "DDIMScheduler", "beta_end": 0.012, "trained_betas": None, "steps_offset": 1},
    "model_weights": {"source": "/cache/a", "weights_sha256": {"unet": "1" * 64, "vae": "2" * 64}},
    "metrics": {"clip_score": {"feature_extractor_weights": {"files": {"model.safetensors": "3" * 64}},
                               "clip_score_truncated_texts": 2}},
    "seconds": {"load": 1.5},
}


def _variant(**changes) -> dict:
    run = copy.deepcopy(RUN)
    for path, value in changes.items():
        node = run
        *parents, last = path.split("__")
        for key in parents:
            node = node[key]
        if value is None:
            node.pop(last)
        else:
            node[last] = value
    return run


def test_fields_are_the_provenance_that_can_change_a_number() -> None:
    fields = provenance_fields(RUN)
    assert fields["versions.torch"] == "2.14.1" and fields["environment.device"] == "cuda"  # the type, not the index
    assert fields["environment.gpu_name"] == "NVIDIA H100" and fields["environment.evalrun_git"] == "abc"
    assert fields["scheduler_config.beta_end"] == "0.012" and fields["scheduler_config.trained_betas"] == "null"
    assert fields["model_weights.weights_sha256.unet"] == "1" * 64
    assert fields["metrics.clip_score.feature_extractor_weights.files.model.safetensors"] == "3" * 64
    # timings, paths, the platform string and per-run counts differ between any two runs: not compared
    assert not any(k.startswith(("seconds", "model_weights.source", "environment.platform")) or "truncated" in k
                   for k in fields)


def test_differing_fields_name_the_field_the_values_and_the_runs() -> None:
    runs = {"a": RUN, "b": _variant(versions__torch="2.13.0", environment__device="cuda:1"),
            "c": _variant(environment__gpu_name=None, model_weights__weights_sha256__unet="9" * 64)}
    diff = differing_fields(runs)
    assert diff == {"versions.torch": {"2.14.1": ["a", "c"], "2.13.0": ["b"]},
                    "environment.gpu_name": {"NVIDIA H100": ["a", "b"], "(absent)": ["c"]},
                    "model_weights.weights_sha256.unet": {"1" * 64: ["a", "b"], "9" * 64: ["c"]}}
    assert differing_fields({"a": RUN, "b": copy.deepcopy(RUN)}) == {}
    assert differing_fields({"a": RUN}) == {} and differing_fields({}) == {}
    assert differing_fields(runs, fields=["versions.*"]) == {"versions.torch": diff["versions.torch"]}
    lines = describe(diff)
    assert lines[0] == "versions.torch: 2.14.1 (2 runs) vs 2.13.0 (1 run)"
    assert lines[2] == "model_weights.weights_sha256.unet: 1111111111111111… (2 runs) vs 9999999999999999… (1 run)"
    assert describe(diff, max_fields=1)[-1] == "... and 2 more field(s)"
    groups = group_differences({("ddim",): runs, ("dpm",): {"x": RUN, "y": RUN}})
    assert list(groups) == [("ddim",)] and groups[("ddim",)] == diff


def test_report_shows_differences_within_a_configuration_only(tmp_path: Path) -> None:
    # scheduler_config differs between schedulers (swept: fine); torch differs between two seeds of ddim (not fine)
    sweep_dir = tmp_path / "s"
    for scheduler in ("ddim", "dpm"):
        for seed in (0, 1):
            provenance = copy.deepcopy(PROVENANCE)
            provenance["scheduler_config"]["class"] = scheduler
            if scheduler == "ddim" and seed == 1:
                provenance["versions"]["torch"] = "2.13.0"
            make_run(sweep_dir / f"scheduler={scheduler},seed={seed}", config("sd15", scheduler, 2, seed),
                     provenance=provenance)
    assert list(load_sweep([sweep_dir]).provenance_differences()) == [("ddim",)]
    written = build_report([sweep_dir], plots=False)
    report = written["index"][0].read_text()
    assert "**Runs averaged together differ in provenance**" in report
    assert "> - Scheduler=ddim: `versions.torch: 2.14.1 (1 run) vs 2.13.0 (1 run)`" in report
    assert "scheduler_config" not in report.split("## ")[0]
    page = written["gallery"][0].read_text()
    assert 'id="provenance"' in page and "versions.torch: 2.14.1 (1 run) vs 2.13.0 (1 run)" in page
    clean = make_sweep(tmp_path / "c", schedulers=("ddim",), steps=(2,))
    assert "differ in provenance" not in build_report([clean], plots=False)["index"][0].read_text()
