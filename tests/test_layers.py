"""The import direction of docs/architecture.md: a module of ``nag`` imports only its own layer
and the layers below it. Every ``import`` counts, at module level or inside a function (a lazy
import is still a dependency), and every module must belong to a layer."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nag"

#: Lowest first. A module belongs to the layer of its longest matching prefix.
LAYERS: list[tuple[str, ...]] = [
    ("nag.errors",),  # the one-line user errors
    ("nag.nn",),  # torch building blocks, including the networks spaces build (to_module)
    ("nag.spaces",),  # what an architecture is: encode/decode, keys, costs, the registry
    ("nag.io",),  # checkpoints (weights-only), atomic writes, row writers, export, fit-and-cache
    ("nag.plugins",),  # Lightning's checkpoint IO through nag.io
    ("nag.benchmarks",),  # table look-ups keyed by canonical architecture
    ("nag.metrics",),  # validity, uniqueness, novelty, benchmark truth, Pareto fronts
    ("nag.zc",),  # zero-cost proxies on real images
    ("nag.report",),  # terminal tables and plots
    ("nag.datamodules",),  # architectures + targets, tasks
    ("nag.diffusion",),  # SDEs, categorical diffusion, samplers, guidance (math only)
    ("nag.lightning_modules",),  # what nag trains
    ("nag.hardware",),  # few-shot device latency prediction, selection under a device budget
    ("nag.generation",),  # the Generator protocol, the typed request and its one entry point, decode/score
    ("nag.callbacks",),  # Lightning callbacks that generate and draw
    ("nag.search",),  # oracle, strategies, runner
    ("nag.search.hierarchical",),  # the hierarchical pipeline
    ("nag.trainer",),  # NagTrainer: Lightning's Trainer plus generate
    ("nag.cli",),  # NagCLI and the subcommands
    ("nag", "nag.__main__"),  # the package's API (load_generator, ...) and `python -m nag`
]
NAMES = [layer[0] for layer in LAYERS]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int | None:
    """Index in :data:`LAYERS` of the longest prefix of ``module`` (None: in no layer)."""
    best, found = -1, None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    return found


def imports(source: str, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """``(line, imported nag module)`` for every import in ``source``, functions included;
    ``from a import b`` names module ``a.b`` when that is a module, else ``a``."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "nag":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            if base.split(".")[0] != "nag":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield node.lineno, sub if sub in MODULES else base


def violations(source: str, module: str, path: str, is_package: bool = False) -> list[str]:
    mine = layer_of(module)
    out = []
    for line, target in sorted(imports(source, module, is_package)):
        theirs = layer_of(target)
        if theirs is not None and mine is not None and theirs > mine:
            out.append(
                f"{path}:{line} imports {target} (layer {NAMES[theirs]}) from layer {NAMES[mine]}: "
                "a layer imports only the layers below it (docs/architecture.md)"
            )
    return out


def test_every_module_has_a_layer():
    missing = [m for m in MODULES if layer_of(m) is None]
    assert not missing, f"modules in no layer of tests/test_layers.py (add them to LAYERS): {missing}"


def test_no_module_imports_a_layer_above_it():
    found = []
    for module, path in MODULES.items():
        relative = str(path.relative_to(ROOT))
        found += violations(path.read_text(), module, relative, path.name == "__init__.py")
    assert not found, "\n".join(found)


def test_the_check_sees_lazy_relative_and_from_imports():
    source = (
        "from nag.errors import ConfigError\n"
        "def f():\n"
        "    from nag.cli import main\n"
        "    import nag.search.runner\n"
        "from .. import generation\n"
    )
    found = violations(source, "nag.spaces.base", "nag/spaces/base.py")
    assert [v.split(" (")[0] for v in found] == [
        "nag/spaces/base.py:3 imports nag.cli",
        "nag/spaces/base.py:4 imports nag.search.runner",
        "nag/spaces/base.py:5 imports nag.generation",
    ]
    assert "from layer nag.spaces" in found[0]


def test_the_architecture_page_lists_the_layers_in_this_order():
    """docs/architecture.md's layer list (the ``nag.*`` names of its ``layers`` block) is
    :data:`LAYERS`, so the map and this test cannot drift apart."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"```text\n# layers, lowest first\n(.*?)```", page, re.S)
    assert block, "docs/architecture.md has no '# layers, lowest first' text block"
    listed = [line.split()[0] for line in block.group(1).splitlines() if line.strip()]
    assert listed == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_each_layer_exists(name):
    assert name in MODULES, f"layer {name} names no module of nag"
