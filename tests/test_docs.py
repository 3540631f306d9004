"""The README and docs/ as a new user reads them: links resolve, named files exist, and every
``nag`` command in a code block parses (``--print_config``) against the real configs."""

import re
import shlex
from pathlib import Path

import pytest

from nag.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
PATH = re.compile(r"(?<![\w./-])((?:configs|examples|benchmarks|docs|tests|nag)/[\w./-]*\w)")
FENCE = re.compile(r"```bash\n(.*?)```", re.DOTALL)
#: What a user substitutes: the data folder.
SUBSTITUTE = {"$DATA": "../shared/data"}


def anchors(page: Path) -> set[str]:
    """GitHub's heading slugs: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def commands(page: Path) -> list[list[str]]:
    """``nag ...`` commands of the page's bash blocks, continuation lines joined, comments dropped."""
    found = []
    for block in FENCE.findall(page.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            for key, value in SUBSTITUTE.items():
                line = line.replace(key, value)
            if line.startswith("nag "):
                found.append(shlex.split(line, comments=True)[1:])
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        assert dest.exists(), f"{page.name}: dead link {target!r}"
        if anchor:
            assert anchor in anchors(dest), f"{page.name}: no heading for {target!r}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_named_repository_files_exist(page):
    for name in PATH.findall(page.read_text()):
        assert (ROOT / name).exists(), f"{page.name} names {name!r}, which does not exist"


#: The README's commands and the tutorial's (docs/cli.md repeats README commands with other values).
CLI_CASES = [
    (page, cmd)
    for page in (ROOT / "README.md", ROOT / "docs" / "new_search_space.md")
    for cmd in commands(page)
    if cmd[0] in ("fit", "generate", "search", "test")
]
#: The overlay the README shows as ``my.yaml``.
OVERLAY = "data: {init_args: {benchmark: {init_args: {dataset: citeseer}}}}"


@pytest.mark.parametrize("page, args", CLI_CASES, ids=[f"{p.name}:{' '.join(a[:3])}" for p, a in CLI_CASES])
def test_commands_parse(page, args, monkeypatch, capsys, tmp_path):
    """Parsing checks config files, keys and values; checkpoints do not exist yet, so
    ``--ckpt_path`` is left out, and nothing runs."""
    monkeypatch.chdir(ROOT)
    if "my.yaml" in args:
        assert OVERLAY in page.read_text()
        (tmp_path / "my.yaml").write_text(OVERLAY)
        args = [str(tmp_path / "my.yaml") if a == "my.yaml" else a for a in args]
    monkeypatch.syspath_prepend(str(ROOT / "examples"))  # docs/new_search_space.md sets PYTHONPATH=examples
    if "--ckpt_path" in args:
        i = args.index("--ckpt_path")
        args = args[:i] + args[i + 2 :]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--print_config"])
    assert exit_info.value.code == 0, capsys.readouterr().err


def test_every_documented_subcommand_exists():
    used = {cmd[0] for page in PAGES for cmd in commands(page)}
    assert used <= {
        "fit",
        "validate",
        "test",
        "predict",
        "generate",
        "search",
        "export",
        "measure-latency",
        "search-hierarchical",
    }, used
    assert {"fit", "generate", "search", "export"} <= used


PYTHON = re.compile(r"```python\n(.*?)```", re.S)
QUICKSTART_CKPT = "runs/quickstart/lightning_logs/version_0/checkpoints/last.ckpt"


@pytest.mark.usefixtures("single_thread")
def test_python_api_example_runs_as_written(tmp_path, capsys):
    """The README's Python example (repeated in docs/python_api.md) on a briefly trained quickstart."""
    from nag.cli import main

    examples = [
        b
        for page in (ROOT / "README.md", ROOT / "docs" / "python_api.md")
        for b in PYTHON.findall(page.read_text())
        if "load_generator" in b
    ]
    assert len(examples) == 2 and examples[0] == examples[1], "README and docs/python_api.md show the same example"
    main(
        [
            "fit",
            "--config",
            str(ROOT / "configs" / "quickstart.yaml"),
            "--trainer.max_steps=3",
            "--trainer.limit_val_batches=1",
            "--generate_after_fit=0",
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    ckpt = next(tmp_path.rglob("last.ckpt"))
    assert QUICKSTART_CKPT in examples[0]
    exec(compile(examples[0].replace(QUICKSTART_CKPT, str(ckpt)), "README example", "exec"), {})
    out = capsys.readouterr().out
    assert "valid 1.00" in out and "mean true accuracy" in out
