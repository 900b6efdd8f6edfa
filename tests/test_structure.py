"""The package's shape: no import cycles (lazy imports included), every registry entry resolves,
and validation answers a mistyped value before torch or diffusers are imported."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys

import pytest

from conftest import REPO, assert_refused_before_import

PACKAGE = REPO / "evalrun"


def import_graph() -> dict[str, set[str]]:
    """module -> package modules it imports anywhere (top level, in functions, under TYPE_CHECKING)."""
    modules = {".".join(f.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): f
               for f in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, done, stack = [], set(), []

    def visit(node: str) -> None:
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in done:
            return
        stack.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        stack.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    return cycles


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_the_package():
    graph = import_graph()
    assert len(graph) > 40 and graph["evalrun.run"]  # the walk really saw the package
    assert find_cycles(graph) == []


def test_modules_stay_small():
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > 320} == {}


def test_every_registry_entry_resolves():
    from evalrun.metrics.features import EXTRACTORS
    from evalrun.metrics.registry import METRICS
    from evalrun.paths import CONF_DIR
    from evalrun.prompts import SOURCES
    from evalrun.tasks import TASKS
    from evalrun.tiny import BUILDERS

    for registry in (METRICS, EXTRACTORS, SOURCES, TASKS, BUILDERS):
        for target in registry.values():
            module, attr = target.split(":")
            assert callable(getattr(importlib.import_module(module), attr)), target
    assert set(METRICS) == {p.stem for p in (CONF_DIR / "metrics").glob("*.yaml")}
    sources = {__import__("omegaconf").OmegaConf.load(p).get("source") for p in (CONF_DIR / "prompts").glob("*.yaml")}
    assert sources - {None} <= set(SOURCES)


@pytest.mark.parametrize("name", ["classes", "instructpix2pix_demo", "edit_demo", "parti", "doc"])
def test_every_prompt_set_composes_and_validates_in_a_fresh_process(name):
    """Composing any prompt set works whatever the process imported before (no registration by import)."""
    code = ("import sys; sys.path.insert(0, 'tests'); from conftest import compose; "
            f"from evalrun.prompts import validate_prompts; validate_prompts(compose('prompts={name}').prompts)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_mistyped_value_is_answered_before_torch_is_imported():
    assert_refused_before_import([(bad,) for bad in ("seed=-1", "steps=abc", "metrics.kid.subsets=0", "height=30", "dtype=float8")],
                                 common=("metrics=[clip_score,kid]", "reference=folder", "reference.path=."),
                                 heavy=("torch", "diffusers", "transformers", "pandas"))


@pytest.mark.parametrize("module", ["aggregate", "diversity", "merge", "score", "cache", "report", "reference"])
def test_each_commands_help_states_its_purpose_in_whole_sentences(module, capsys):
    """``--help`` shows the module docstring's first paragraph, not a first line cut mid-sentence."""
    import importlib

    entry = importlib.import_module(f"evalrun.{module}.__main__" if module in ("report", "reference") else
                                    f"evalrun.{module}")
    with pytest.raises(SystemExit) as done:
        entry.main(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    description = text.split(" positional arguments:")[0].split(" options:")[0].split("]", 1)[-1]
    opened = description.count("(") - description.count(")")
    assert opened == 0 and description.rstrip()[-1:] in ".):`'\"", description
