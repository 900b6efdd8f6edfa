"""evalrun.composition.JobComposer: a sweep's job configs, rebuilt from one Hydra composition, equal
Hydra's full composition of each job (values, interpolations, struct flags), whatever the groups."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from evalrun.api import expand
from evalrun.composition import JobComposer, compose

CONF = Path(__file__).resolve().parent.parent / "evalrun" / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def assert_same(mine, job):
    hydras = compose(job)
    assert OmegaConf.to_yaml(mine) == OmegaConf.to_yaml(hydras), job
    assert OmegaConf.to_container(mine, resolve=True) == OmegaConf.to_container(hydras, resolve=True), job
    for node in (mine, mine.scheduler, mine.prompts, mine.model):  # struct all the way down, as Hydra's
        assert OmegaConf.is_struct(node), job
        with pytest.raises(Exception):
            node.not_a_key = 1


def test_every_scheduler_prompt_set_and_reference_equals_hydras_composition():
    """Leaf groups swapped from the sweep's config: every option of each, under an experiment that writes
    into prompts (scheduler_comparison), the ADM protocol (writes reference, metrics, top-level keys), and
    config.yaml's own prompts.negative_prompt. One Hydra composition serves them all."""
    composer = JobComposer()
    fixed = ["experiment=scheduler_comparison", "prompts.limit=3", "model.path=evalrun/tiny-sd", "metrics=[]"]
    composer.sweep_config(fixed)
    jobs = [[*fixed, f"scheduler={s}", "seed=1"] for s in options("scheduler")]
    jobs += [[*fixed, f"prompts={p}", "steps=4"] for p in options("prompts")]
    jobs += [[*fixed, "scheduler=dpm", f"reference={r}"] for r in options("reference")]
    for job in jobs:
        assert_same(composer(job), job)
    assert composer.hydra_compositions == 2  # the sweep's own, and prompts=edit_demo (it has a defaults list)

    adm = JobComposer()
    fixed = ["model=tiny_ddpm", "protocol=adm", "reference.path=/tmp/ref.npz"]
    adm.sweep_config(fixed)
    for job in ([*fixed, f"scheduler={s}", "seed=2"] for s in ("ddim", "dpm", "euler_a", "default")):
        assert_same(adm(job), job)
    assert adm.hydra_compositions == 1


def test_groups_with_their_own_defaults_and_other_overrides_compose_in_full():
    """What a rebuild cannot prove equal goes to Hydra: models with a defaults list, metric lists,
    + and ~ overrides of a swapped group, hydra.* overrides; the results still equal Hydra's."""
    composer = JobComposer()
    jobs = expand(["scheduler=ddim,dpm", "seed=0,3", "steps=4,20", "model.path=evalrun/tiny-sd",
                   "metrics=[clip_score],[clip_score,fid]", "metrics.clip_score.batch_size=8", "reference=folder",
                   "reference.path=/tmp"])
    jobs += [["experiment=smoke_sweep", "seed=2"], ["model=tiny_ddpm", "num_images=5", "+extra_key=1"],
             ["model=tiny_img2img", "scheduler=dpm"], ["model=tiny_pix2pix", "scheduler=euler"],
             ["debug=smoke", "model=flux_dev", "scheduler=flow_euler", "scheduler.kwargs.shift=3.0"],
             ["debug=smoke", "model=flux_dev", "scheduler=flow_dpm", "scheduler.kwargs.shift=3.0"],
             ["scheduler=unipc", "+scheduler.kwargs.lower_order_final=false"],
             ["hydra.searchpath=[file:///nonexistent]", "seed=1"]]
    for job in jobs:
        assert_same(composer(job), job)
    # the 16 grid jobs: one composition for the first (scheduler, metrics) pair, its other scheduler
    # rebuilt, the other metric list composed; then experiment, tiny_ddpm (+key), tiny_img2img and
    # tiny_pix2pix (defaults lists), the first flux job, the +scheduler job and the hydra.* job.
    assert composer.hydra_compositions == 2 + 7


def test_a_value_before_a_plus_override_of_its_parent_keeps_hydras_order():
    """Hydra applies overrides in command-line order: scheduler.kwargs.use_karras_sigmas=true then
    ++scheduler.kwargs={use_karras_sigmas:false} is false; the rebuilt job applied the value last (true)."""
    composer = JobComposer()
    for value in ("true", "false"):
        job = ["scheduler=dpm_karras", f"scheduler.kwargs.use_karras_sigmas={value}",
               "++scheduler.kwargs={use_karras_sigmas:false}"]
        assert composer(job).scheduler.kwargs.use_karras_sigmas is False
        assert_same(composer(job), job)


def test_rebuilt_configs_are_independent_copies():
    """A job's config is its own: changing it changes neither the next job's nor the cached base."""
    composer = JobComposer()
    composer.sweep_config(["seed=0"])
    first = composer(["scheduler=dpm", "seed=0"])
    first.scheduler.kwargs = {"x": 1}
    first.prompts.negative_prompt = "changed"
    again = composer(["scheduler=dpm", "seed=0"])
    assert_same(again, ["scheduler=dpm", "seed=0"])


def test_without_hydras_internals_every_job_is_composed_by_hydra(monkeypatch):
    """If a Hydra release moves the internals the rebuilds read (no defaults list is seen), the composer
    falls back to Hydra's own composition for each set of group choices: slower, still equal."""
    import contextlib

    import evalrun.composition

    monkeypatch.setattr(evalrun.composition, "_capturing_defaults_lists", lambda: contextlib.nullcontext([]))
    composer = JobComposer()
    composer.sweep_config(["seed=0"])
    for job in (["scheduler=dpm", "seed=0"], ["scheduler=ddim", "seed=1"]):
        assert_same(composer(job), job)
    assert composer.hydra_compositions == 3


def _node_types(cfg) -> list:
    """Every node's key path and class, in order (resolution must leave the same node kinds)."""
    from omegaconf import DictConfig, ListConfig

    found, todo = [], [("", cfg)]
    while todo:
        path, node = todo.pop()
        found.append((path, type(node).__name__, OmegaConf.is_struct(node) if OmegaConf.is_config(node) else None))
        if isinstance(node, DictConfig) and not node._is_none() and not node._is_missing():
            todo += [(f"{path}.{k}", node._get_node(k)) for k in node.keys()]
        elif isinstance(node, ListConfig) and not node._is_none() and not node._is_missing():
            todo += [(f"{path}[{i}]", node._get_node(i)) for i in range(len(node))]
    return found


def test_interpolations_resolve_in_place_as_omegaconf_resolves_them():
    """evalrun.interpolations keeps each interpolation's parse tree; what it resolves must be what
    OmegaConf.resolve gives: values, node kinds and flags, missing values and errors alike, on every
    metric's config, smoke presets of each task, the ADM protocol and the experiments."""
    import copy

    from omegaconf.errors import InterpolationKeyError

    from evalrun.interpolations import resolve_in_place

    composer = JobComposer()
    composer.sweep_config(["seed=0"])
    jobs = [[f"metrics=[{','.join(options('metrics'))}]"], ["model=tiny_ddpm", "protocol=adm"],
            ["experiment=scheduler_comparison"], ["experiment=edit_demo"],
            *[["debug=smoke", f"model={m}"] for m in ("flux_dev", "qwen_image_edit", "ddpm_cifar10", "dit256")]]
    edge = OmegaConf.create({"a": "???", "b": "${a}", "c": {"x": 1, "y": "${..a}"}, "d": "${c}", "e": "${c.x}_${c.x}",
                             "f": "${oc.select:nope.key,${c.x}}", "g": ["${c.x}", "${oc.select:c,null}"],
                             "h": "${oc.env:EVALRUN_NO_SUCH_VARIABLE,fallback}"})
    configs = [composer(job) for job in jobs] + [edge]
    for cfg in configs:
        mine, theirs = copy.deepcopy(cfg), copy.deepcopy(cfg)
        resolve_in_place(mine)
        OmegaConf.resolve(theirs)
        assert OmegaConf.to_yaml(mine) == OmegaConf.to_yaml(theirs)
        assert _node_types(mine) == _node_types(theirs)
    assert OmegaConf.is_missing(mine, "b") and mine.f == 1 and mine.e == "1_1"  # the edge cases did occur
    for bad in ({"a": "${nope}"}, {"a": "${oc.select:}"}):
        with pytest.raises(Exception) as theirs:
            OmegaConf.resolve(OmegaConf.create(bad))
        with pytest.raises(type(theirs.value)):
            resolve_in_place(OmegaConf.create(bad))
    with pytest.raises(InterpolationKeyError):
        resolve_in_place(OmegaConf.create({"a": "${nope}"}))
