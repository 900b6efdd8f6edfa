"""Speed options and batch sizes: validated before anything loads, recorded, part of the images'
identity, and an out-of-memory error halves the batch without losing an image."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from conftest import error_of, run_inprocess


@pytest.mark.parametrize("override, expected", [
    ("attention=fast", "attention='fast' is not a backend evalrun offers"),
    ("compile=1.5", "compile must be false, true or a torch.compile mode"),
    ("batch_size=0", "batch_size must be a positive integer or auto"),
    ("channels_last=maybe", "channels_last must be true or false"),
    ("channels_last=1", "channels_last must be true or false, got 1"),  # 1 == True, but not the same key
    ("compile=1", "compile must be false, true or a torch.compile mode"),
])
def test_bad_options_are_one_line(tmp_path, override, expected):
    assert expected in error_of(override, run_dir=tmp_path)


@pytest.mark.parametrize("overrides, expected", [
    # Options that would do nothing here (recorded and keyed as if they had), or fail mid-run.
    (["tf32=true"], "tf32=true has no effect on cpu (TF32 is a CUDA matmul mode); remove it"),
    (["model=tiny_flux", "attention=_native_efficient"], "attention=_native_efficient needs CUDA; on cpu use"),
    (["offload=sequential"], "offload=sequential needs a GPU"),  # device=auto, resolved to the CPU here
    (["model=tiny_ddpm", "num_images=2", "vae_tiling=true"], "vae_tiling=true has no effect on DDPMPipeline"),
    (["model=cogview4", "debug=smoke", "batch_size=auto"], "so an image depends on the other prompts in its batch; "
                                                            "use batch_size=1 (batch_size=auto)"),
])
def test_options_without_effect_or_device_are_refused_before_the_weights_load(tmp_path, overrides, expected):
    from evalrun.pipelines import _CACHE

    if torch.cuda.is_available():
        pytest.skip("these options are refused only off CUDA")
    before = dict(_CACHE)
    assert expected in error_of(*overrides, "prompts.limit=1" if "num_images=2" not in overrides else "steps=2",
                                run_dir=tmp_path)
    assert _CACHE == before


def test_an_attention_backend_stays_with_its_model(tmp_path):
    """diffusers makes a model's attention backend the process-wide default: a sweep's next job without
    the option sampled with it, and stored its images as made without it. The default is put back; a
    model whose attention does not use the dispatcher (the UNets) refuses the option."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry
    from PIL import Image

    common = ["model=tiny_flux", "prompts.limit=1", "steps=2", "paths.image_store=none"]
    default = _AttentionBackendRegistry._active_backend
    run_inprocess(*common, run_dir=tmp_path / "before")
    run_inprocess(*common, "attention=_native_math", run_dir=tmp_path / "math")
    assert _AttentionBackendRegistry._active_backend == default
    run_inprocess(*common, run_dir=tmp_path / "after")
    image = {d: Image.open(tmp_path / d / "images" / "00000_00.png").tobytes() for d in ("before", "math", "after")}
    assert image["after"] == image["before"] != image["math"]
    assert "attention=native has no effect on UNet2DConditionModel" in error_of("attention=native", "prompts.limit=1",
                                                                                run_dir=tmp_path / "unet")
    assert "channels_last=true has no effect on FluxTransformer2DModel (it has no convolutions)" in error_of(
        *common, "channels_last=true", run_dir=tmp_path / "flux")  # recorded and keyed, with identical pixels


def test_an_option_is_recorded_and_keeps_its_images_apart(tmp_path):
    plain = run_inprocess("prompts.limit=1", run_dir=tmp_path / "plain")
    fast = run_inprocess("prompts.limit=1", "channels_last=true", run_dir=tmp_path / "fast")
    assert fast["generation_key"] != plain["generation_key"]  # never mixed with images made without it
    assert fast["provenance"]["images"]["sampled"] == 1
    row = json.loads((tmp_path / "fast" / "run.json").read_text())
    assert "channels_last" in row["config_columns"] and "channels_last" not in plain["config_columns"]


def test_compile_wraps_the_denoiser_with_the_mode_asked_for(monkeypatch):
    from evalrun.acceleration import apply

    calls = []
    monkeypatch.setattr(torch, "compile", lambda module, mode=None: calls.append(mode) or ("compiled", module))

    class Pipe:
        unet = torch.nn.Linear(2, 2)

    pipe = Pipe()
    original = pipe.unet
    apply(pipe, {"compile": "max-autotune-no-cudagraphs", "tf32": True})
    assert pipe.unet == ("compiled", original) and calls == ["max-autotune-no-cudagraphs"] and pipe._evalrun_tf32


@pytest.mark.parametrize("ahead", [False, True], ids=["in-line", "sampling-ahead"])
def test_out_of_memory_halves_the_batch_and_loses_nothing(tmp_path, monkeypatch, caplog, ahead):
    import evalrun.generate as generate
    import evalrun.outputs as outputs

    real = generate.sample

    def small_gpu(pipe, task, jobs, params, cost=None, warmup=False):
        if len(jobs) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(pipe, task, jobs, params, cost, warmup)

    common = ("prompts.limit=5", "num_images_per_prompt=2", "paths.image_store=none")  # 10 images: 8, then 2
    reference = run_inprocess(*common, "batch_size=2", run_dir=tmp_path / "ref")
    monkeypatch.setattr(generate, "sample", small_gpu)
    monkeypatch.setattr(outputs, "overlaps_sampling", lambda device: ahead)  # on a GPU the halving happens on the sampling thread
    with caplog.at_level(logging.WARNING):
        record = run_inprocess(*common, "batch_size=8", run_dir=tmp_path / "oom")
    assert "out of GPU memory at batch 8: continuing at batch 4" in caplog.text
    assert "out of GPU memory at batch 4: continuing at batch 2" in caplog.text
    assert record["provenance"]["batch_size_used"] == 2, record["provenance"]
    assert record["provenance"]["images"]["sampled"] == 10, record["provenance"]["images"]
    assert record["values"]["clip_score"] == reference["values"]["clip_score"]


def test_auto_batch_size_is_found_once_and_remembered(tmp_path):
    from evalrun.acceleration import auto_batch_size

    class Cuda:
        type = "cuda"

    probed = []

    def probe(batch):
        probed.append(batch)
        if batch > 32:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    cache = tmp_path / "batch_sizes.json"
    assert auto_batch_size(probe, {"model": "m", "size": 512}, cache, Cuda()) == 32
    assert probed == [8, 16, 32, 64]
    assert auto_batch_size(probe, {"model": "m", "size": 512}, cache, Cuda()) == 32 and len(probed) == 4  # remembered
    assert auto_batch_size(probe, {"model": "m", "size": 1024}, cache, Cuda()) == 32 and len(probed) == 8
    assert auto_batch_size(probe, {}, cache, torch.device("cpu")) == 4  # nothing to probe off CUDA


def test_auto_batch_size_on_cpu_runs_with_four(tmp_path):
    record = run_inprocess("prompts.limit=1", "batch_size=auto", run_dir=tmp_path / "run")
    assert record["provenance"]["batch_size"] == 4 and record["config"]["batch_size"] == 4
    # Its directory stays its own: a re-run finds it complete (it once refused it as "another configuration",
    # the key having been taken after auto was resolved in place).
    again = run_inprocess("prompts.limit=1", "batch_size=auto", run_dir=tmp_path / "run")
    assert again["run_key"] == record["run_key"] and again["config_key"] == record["config_key"]


def test_the_remembered_batch_size_is_keyed_by_what_moves_the_peak(tmp_path, monkeypatch):
    """A batch size found with VAE slicing (or offload, compile, an attention backend) is not the one that fits
    without it: each is part of the key it is remembered under."""
    import evalrun.acceleration

    memos = []
    monkeypatch.setattr(evalrun.acceleration, "auto_batch_size", lambda probe, memo, cache, device: memos.append(memo) or 4)
    for n, extra in enumerate(([], ["vae_slicing=true"], ["channels_last=true"])):
        run_inprocess("prompts.limit=1", "batch_size=auto", "paths.image_store=none", *extra, run_dir=tmp_path / str(n))
    assert memos[0]["memory"] == {"offload": "none", "vae_tiling": False, "vae_slicing": False}
    assert memos[1]["memory"]["vae_slicing"] is True and memos[2]["speed"] == {"channels_last": True}
    assert len({json.dumps(m, sort_keys=True, default=str) for m in memos}) == 3


def test_an_offloaded_pipeline_is_timed_and_its_memory_read_on_its_gpu(monkeypatch):
    """offload=model (or sequential) leaves the denoiser on the CPU between calls: deciding CUDA by its
    parameters recorded device=cpu and no peak memory, so the timing was dropped as made elsewhere and both
    cost columns were NaN for the runs meant to trade time for memory. CUDA is simulated here."""
    import types

    import evalrun.cost as cost

    events = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: events.append("sync"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: events.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    unet = torch.nn.Linear(2, 2)  # on the CPU, where accelerate's offload hooks keep it between calls
    pipe = types.SimpleNamespace(unet=unet, _execution_device=torch.device("cuda", 0))
    with cost.measure(pipe, 2) as measured:
        unet(torch.zeros(4, 2))  # CFG's doubled batch: 2 evaluations an image
    assert (measured["device"], measured["peak_gib"], measured["nfe"]) == ("NVIDIA H100 80GB HBM3", 3.0, 2.0)
    assert events == ["sync", "reset", "sync"]
    pipe._execution_device = torch.device("cpu")
    with cost.measure(pipe, 2) as measured:
        unet(torch.zeros(4, 2))
    assert (measured["device"], measured["peak_gib"]) == ("cpu", None) and events == ["sync", "reset", "sync"]
