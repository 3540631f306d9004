"""Catalogue of bad input: each case exits non-zero with exactly one `error:` line on stderr,
no traceback, and leaves no output file (checkpoint, CSV, JSON or temporary) behind.

Cases already covered elsewhere are not repeated here: unknown/empty targets, empty val
split, unknown NB-Graph dataset, train_size=0, missing nb201.csv and --debug
(tests/test_cli.py); generate without a checkpoint, a truncated checkpoint and a checkpoint of
another space (tests/test_generate_cli.py).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import nag.spaces
from nag.cli import main
from nag.errors import InvalidArchitecture
from nag.spaces.base import SearchSpace

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "configs" / "quickstart_predictor.yaml")
DIFFUSION = str(ROOT / "configs" / "nbgraph" / "diffusion.yaml")
NB201 = str(ROOT / "configs" / "nb201" / "predictor.yaml")
NB201_SCORE = str(ROOT / "configs" / "nb201" / "diffusion.yaml")
NB201_DISCRETE = str(ROOT / "configs" / "nb201" / "discrete_diffusion.yaml")
NB101 = str(ROOT / "configs" / "nb101" / "predictor.yaml")
MBV3 = str(ROOT / "configs" / "mbv3" / "predictor.yaml")
SEARCH = str(ROOT / "configs" / "nbgraph" / "search_rea.yaml")
TRANSFER = str(ROOT / "configs" / "nbgraph" / "search_transfer.yaml")
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
OUTPUTS = (".ckpt", ".csv", ".json", ".tmp")


def edit_first_row(text: str, **change: str) -> str:
    """``text`` (a CSV table) with cells of its first data row replaced."""
    rows = list(csv.DictReader(io.StringIO(text)))
    out = io.StringIO()
    writer = csv.DictWriter(out, list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows([rows[0] | change, *rows[1:]])
    return out.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory, nb201_table) -> dict[str, str]:
    """Broken inputs, written once; each case names the one it needs."""
    d = tmp_path_factory.mktemp("inputs")
    good = nb201_table.read_text()
    texts = {
        "syntax.yaml": "trainer:\n  max_epochs: [\n",
        "empty.yaml": "",
        "list.yaml": "- fit\n- quickstart\n",
        "unknown_key.yaml": "no_such_section:\n  value: 1\n",
        "unknown_model_arg.yaml": "model:\n  init_args:\n    no_such_arg: 3\n",
        "wrong_type.yaml": "trainer:\n  max_epochs: many\n",
        "search_syntax.yaml": "budget: [\n",
        "nb201_empty.csv": "",
        "nb201_header_only.csv": good.splitlines()[0] + "\n",
        "nb201_wrong_columns.csv": good.replace("arch_str", "architecture"),
        "nb201_not_a_number.csv": edit_first_row(good, cifar10_test_200ep="ninety"),
        "nb201_bad_arch.csv": edit_first_row(good, arch_str="|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|"),
        "nb201_duplicate.csv": good + good.splitlines()[1] + "\n",
        "nb101_not_json.json": "{ this is not json",
        "mbv3_empty.csv": "",
        "nb201_ok.csv": good,
    }
    for name, text in texts.items():
        (d / name).write_text(text)
    (d / "nb201_latin1.csv").write_bytes(good.encode() + "caf\xe9".encode("latin-1"))
    (d / "bad_utf8.yaml").write_bytes(b"trainer:\n  max_epochs: \xff\xfe\n")
    (d / "a_folder").mkdir()
    (d / "nb201_space.yaml").write_text(
        "data:\n  init_args:\n    benchmark: null\n    targets: []\n    num_archs: 40\n"
        "    space:\n      class_path: nag.spaces.NB201Space\n"
    )
    (d / "nbgraph_space.yaml").write_text(
        "data:\n  class_path: nag.datamodules.ArchitectureDataModule\n  init_args:\n    benchmark: null\n"
        "    targets: []\n    num_archs: 40\n    space:\n      class_path: nag.spaces.NBGraphSpace\n"
    )
    # the made-up table: configs that get this far instantiate in a fraction of a second
    (d / "tiny.yaml").write_text(
        f"data:\n  init_args:\n    benchmark:\n      init_args:\n        path: {d / 'nb201_ok.csv'}\n"
        "    split: [0.6, 0.2, 0.2]\n    train_size: null\n    batch_size: 8\n"
    )
    (d / "tiny_discrete.yaml").write_text(
        "model:\n  init_args:\n    conditions: [cifar10_test_200ep]\n    T: 10\n    dim: 8\n    edge_dim: 4\n"
        "    layers: 1\n    heads: 2\ndata:\n  init_args:\n    targets: [cifar10_test_200ep]\n"
    )
    (d / "empty.ckpt").write_bytes(b"")
    (d / "garbage.ckpt").write_bytes(b"\x00not a checkpoint" * 64)
    torch.save({"weights": torch.ones(3)}, d / "foreign.ckpt")
    return {
        name: str(d / name)
        for name in [
            *texts,
            "nb201_latin1.csv",
            "bad_utf8.yaml",
            "a_folder",
            "nbgraph_space.yaml",
            "nb201_space.yaml",
            "tiny.yaml",
            "tiny_discrete.yaml",
            "empty.ckpt",
            "garbage.ckpt",
            "foreign.ckpt",
        ]
    }


def fit_tiny(config: str, root: Path, *extra: str) -> str:
    main(
        [
            "fit",
            "--config",
            config,
            *extra,
            "--trainer.max_steps=1",
            "--trainer.limit_val_batches=1",
            "--test_after_fit=false",
            f"--trainer.default_root_dir={root}",
            *QUIET,
        ]
    )
    return str(next(root.rglob("last.ckpt")))


@pytest.fixture(scope="module")
def score_ckpt(files, tmp_path_factory) -> str:
    return fit_tiny(
        NB201_SCORE,
        tmp_path_factory.mktemp("score"),
        "--config",
        files["tiny.yaml"],
        "--model.init_args.dim=8",
        "--model.init_args.layers=1",
        "--model.init_args.heads=2",
    )


@pytest.fixture(scope="module")
def discrete_ckpt(files, tmp_path_factory) -> str:
    return fit_tiny(
        NB201_DISCRETE,
        tmp_path_factory.mktemp("discrete"),
        "--config",
        files["tiny.yaml"],
        "--config",
        files["tiny_discrete.yaml"],
    )


@pytest.fixture(scope="module")
def truncated_ckpt(score_ckpt, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("truncated") / "truncated.ckpt"
    path.write_bytes(Path(score_ckpt).read_bytes()[:3000])
    return str(path)


def expect_error(args: list[str], fragment: str, capsys, workdir: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code not in (0, None), err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert fragment in lines[0], lines[0]
    assert not [p for p in workdir.rglob("*") if p.suffix in OUTPUTS], "output left behind"


Case = Callable[[dict[str, str], Path], list[str]]
FIT = ["fit", "--config", QUICKSTART]


def tiny_fit(f: dict[str, str]) -> list[str]:
    """`fit` on the made-up table: configs that get as far as instantiation do so at once."""
    return ["fit", "--config", NB201, "--config", f["tiny.yaml"]]


# id -> (arguments given the input files and a fresh work folder, fragment of the error line)
CLI_CASES: dict[str, tuple[Case, str]] = {
    # command line
    "no_subcommand": (lambda f, w: [], 'expected "subcommand"'),
    "unknown_subcommand": (lambda f, w: ["frobnicate"], "invalid choice: 'frobnicate'"),
    "unknown_flag": (lambda f, w: [*FIT, "--nonsense"], "unrecognized arguments: --nonsense"),
    "unknown_trainer_flag": (lambda f, w: [*FIT, "--trainer.no_such=1"], "unrecognized arguments: --trainer.no_such"),
    "flag_without_value": (lambda f, w: [*FIT, "--trainer.max_epochs"], "--trainer.max_epochs: expected one argument"),
    "flag_wrong_type": (
        lambda f, w: [*FIT, "--trainer.max_epochs=abc"],
        "\"trainer.max_epochs\": Expected a <class 'int'> (got abc)",
    ),
    "seed_wrong_type": (lambda f, w: [*FIT, "--seed_everything=abc"], '"seed_everything"'),
    "list_element_by_index": (
        lambda f, w: [*FIT, "--data.init_args.benchmarks.0.init_args.path=/x.csv"],
        "a list element cannot be set by its index; give the whole list",
    ),
    "unknown_precision": (lambda f, w: [*FIT, "--trainer.precision=fp8"], "(got fp8)"),
    "unknown_strategy": (
        lambda f, w: [*tiny_fit(f), "--trainer.strategy=nonsense", f"--trainer.default_root_dir={w}"],
        "trainer: You selected an invalid strategy name: `strategy='nonsense'`",
    ),
    "unknown_sde": (
        lambda f, w: ["fit", "--config", DIFFUSION, "--model.init_args.sde=xyz"],
        "Expected a typing.Literal['ve', 'vp']. Got value: xyz",
    ),
    "split_of_two": (lambda f, w: [*FIT, "--data.init_args.split=[0.5,0.5]"], '"data"'),
    "negative_train_size": (
        lambda f, w: [*tiny_fit(f), "--data.init_args.train_size=-5", f"--trainer.default_root_dir={w}"],
        "data.train_size=-5 must be between 1 and the 188 training architectures",
    ),
    "unknown_model_class": (
        lambda f, w: [*FIT, "--model.class_path=nag.NoSuchModel"],
        "module 'nag' has no attribute 'NoSuchModel'",
    ),
    "unknown_data_class": (
        lambda f, w: [*FIT, "--data.class_path=nag.datamodules.NoSuchData"],
        "has no attribute 'NoSuchData'",
    ),
    "fit_without_config": (lambda f, w: ["fit"], "required: fit.model"),
    # YAML
    "config_missing": (
        lambda f, w: ["fit", "--config", "/no/such/config.yaml"],
        "File does not exist: '/no/such/config.yaml'",
    ),
    "yaml_syntax_error": (
        lambda f, w: ["fit", "--config", f["syntax.yaml"]],
        "is not valid YAML: expected the node content",
    ),
    "yaml_empty": (lambda f, w: ["fit", "--config", f["empty.yaml"]], "holds nothing; expected a mapping"),
    "yaml_list": (lambda f, w: ["fit", "--config", f["list.yaml"]], "holds a list; expected a mapping"),
    "yaml_not_utf8": (lambda f, w: ["fit", "--config", f["bad_utf8.yaml"]], "is not valid YAML"),
    "yaml_unknown_key": (lambda f, w: [*FIT, "--config", f["unknown_key.yaml"]], "no_such_section"),
    "yaml_unknown_model_arg": (lambda f, w: [*FIT, "--config", f["unknown_model_arg.yaml"]], "no_such_arg"),
    "yaml_wrong_type": (lambda f, w: [*FIT, "--config", f["wrong_type.yaml"]], "(got many)"),
    # data files
    "nb201_empty": (
        lambda f, w: ["fit", "--config", NB201, f"--data.init_args.benchmark.init_args.path={f['nb201_empty.csv']}"],
        "is empty",
    ),
    "nb201_folder": (
        lambda f, w: ["fit", "--config", NB201, f"--data.init_args.benchmark.init_args.path={f['a_folder']}"],
        "is a folder; pass the data file inside it",
    ),
    "nb201_header_only": (
        lambda f, w: [
            "fit",
            "--config",
            NB201,
            f"--data.init_args.benchmark.init_args.path={f['nb201_header_only.csv']}",
        ],
        "no rows",
    ),
    "nb201_wrong_columns": (
        lambda f, w: [
            "fit",
            "--config",
            NB201,
            f"--data.init_args.benchmark.init_args.path={f['nb201_wrong_columns.csv']}",
        ],
        "missing column 'arch_str'",
    ),
    "nb201_not_a_number": (
        lambda f, w: [
            "fit",
            "--config",
            NB201,
            f"--data.init_args.benchmark.init_args.path={f['nb201_not_a_number.csv']}",
        ],
        "row 2, column 'cifar10_test_200ep': 'ninety' is not a number",
    ),
    "nb201_bad_arch_string": (
        lambda f, w: ["fit", "--config", NB201, f"--data.init_args.benchmark.init_args.path={f['nb201_bad_arch.csv']}"],
        "row 2: nb201: unknown edge op 'conv_9x9'",
    ),
    "nb201_duplicate_row": (
        lambda f, w: [
            "fit",
            "--config",
            NB201,
            f"--data.init_args.benchmark.init_args.path={f['nb201_duplicate.csv']}",
        ],
        "repeats cell",
    ),
    "nb201_not_utf8": (
        lambda f, w: ["fit", "--config", NB201, f"--data.init_args.benchmark.init_args.path={f['nb201_latin1.csv']}"],
        "not a readable CSV",
    ),
    "nb201_target_all_nan": (
        lambda f, w: [
            "fit",
            "--config",
            NB201,
            f"--data.init_args.benchmark.init_args.path={f['nb201_ok.csv']}",
            "--data.init_args.targets=[empty_metric]",
        ],
        "'empty_metric' has no values in NB201Benchmark",
    ),
    "nb101_missing": (
        lambda f, w: ["fit", "--config", NB101, "--data.init_args.benchmark.init_args.path=/no/such/nb101.json"],
        "data file '/no/such/nb101.json' not found",
    ),
    "nb101_not_json": (
        lambda f, w: [
            "fit",
            "--config",
            NB101,
            f"--data.init_args.benchmark.init_args.path={f['nb101_not_json.json']}",
        ],
        "is not valid JSON",
    ),
    "mbv3_empty": (
        lambda f, w: ["fit", "--config", MBV3, f"--data.init_args.benchmark.init_args.path={f['mbv3_empty.csv']}"],
        "is empty",
    ),
    # checkpoints
    "ckpt_missing": (lambda f, w: [*FIT, "--ckpt_path", "/no/such.ckpt"], "'/no/such.ckpt': no such checkpoint"),
    "ckpt_folder": (lambda f, w: [*FIT, "--ckpt_path", f["a_folder"]], "no such checkpoint"),
    "ckpt_empty": (
        lambda f, w: [*FIT, "--ckpt_path", f["empty.ckpt"]],
        "not a readable checkpoint (truncated or corrupt",
    ),
    "ckpt_garbage": (
        lambda f, w: [*FIT, "--ckpt_path", f["garbage.ckpt"]],
        "not a readable checkpoint (truncated or corrupt",
    ),
    "ckpt_not_from_nag": (
        lambda f, w: [*FIT, "--ckpt_path", f["foreign.ckpt"]],
        "not a Lightning checkpoint of a nag model",
    ),
    # search
    "search_unknown_strategy": (
        lambda f, w: ["search", "--config", SEARCH, "--strategy", "nag.search.NoSuch"],
        "Problem with given class_path 'nag.search.NoSuch'",
    ),
    "search_zero_budget": (
        lambda f, w: ["search", "--config", SEARCH, "--budget=0", f"--output={w / 's.json'}"],
        "--budget=0: a search needs at least one query",
    ),
    "search_budget_not_int": (
        lambda f, w: ["search", "--config", SEARCH, "--budget=abc"],
        "\"budget\": Expected a <class 'int'>",
    ),
    "search_no_seeds": (
        lambda f, w: ["search", "--config", SEARCH, "--seeds=[]", f"--output={w / 's.json'}"],
        "--seeds is empty",
    ),
    "search_unknown_metric": (
        lambda f, w: ["search", "--config", SEARCH, "--metric=nope", f"--output={w / 's.json'}"],
        "unknown metric 'nope'",
    ),
    "search_bad_output": (
        lambda f, w: ["search", "--config", SEARCH, f"--output={w / 's.txt'}"],
        "expected a .csv or .json",
    ),
    "search_missing_arguments": (lambda f, w: ["search"], "required: benchmark, metric, strategy"),
    "search_yaml_syntax_error": (lambda f, w: ["search", "--config", f["search_syntax.yaml"]], "is not valid YAML"),
    "search_unknown_dataset": (
        lambda f, w: ["search", "--config", SEARCH, "--benchmark.init_args.dataset=imdb", f"--output={w / 's.json'}"],
        "unknown dataset 'imdb'",
    ),
    "search_predictor_ckpt_missing": (
        lambda f, w: [
            "search",
            "--config",
            TRANSFER,
            f"--output={w / 's.json'}",
            "--strategy.init_args.predictor_ckpt=/no/such.ckpt",
        ],
        "'/no/such.ckpt': no such checkpoint",
    ),
}


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_case(case, files, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build, fragment = CLI_CASES[case]
    expect_error(build(files, tmp_path), fragment, capsys, tmp_path)


def generate_args(configs: list[str], ckpt: str, out: Path, *extra: str) -> list[str]:
    return [
        "generate",
        *(a for c in configs for a in ("--config", c)),
        "--ckpt_path",
        ckpt,
        "--num_samples=4",
        "--steps=2",
        f"--output={out}",
        *QUIET,
        *extra,
    ]


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--num_samples=0"], "--num_samples=0: ask for at least one architecture"),
        (["--steps=0"], "--steps=0: both must be at least 1"),
        (["--batch_size=0"], "--batch_size=0"),
        (["--sampler=euler"], '"sampler"'),
        (["--metrics=[no_such_metric]"], "unknown metric 'no_such_metric'"),
        (['--conditions={"cifar10_test_200ep": 90}'], "is not a conditional generator"),
    ],
    ids=["zero_samples", "zero_steps", "zero_batch", "unknown_sampler", "unknown_metric", "conditions_unconditional"],
)
def test_generate_case(extra, fragment, score_ckpt, files, capsys, tmp_path):
    args = generate_args([NB201_SCORE, files["tiny.yaml"]], score_ckpt, tmp_path / "out.csv", *extra)
    expect_error(args, fragment, capsys, tmp_path)


def test_generate_metrics_without_a_benchmark(score_ckpt, files, capsys, tmp_path):
    args = generate_args(
        [NB201_SCORE, files["tiny.yaml"], files["nb201_space.yaml"]],
        score_ckpt,
        tmp_path / "out.csv",
        "--metrics=[cifar10_test_200ep]",
    )
    expect_error(args, "the config's data has no benchmark to look them up in", capsys, tmp_path)


def test_generate_to_an_unwritable_suffix_fails_before_sampling(score_ckpt, files, capsys, tmp_path):
    args = generate_args([NB201_SCORE, files["tiny.yaml"]], score_ckpt, tmp_path / "out.txt")
    expect_error(args, "expected a .csv or .json file name", capsys, tmp_path)


@pytest.mark.parametrize(
    "conditions, fragment",
    [
        ('{"no_such_condition": 1.0}', "was trained with conditions"),
        ('{"cifar10_test_200ep": .nan}', "give one finite value"),
        ('{"cifar10_test_200ep": .inf}', "give one finite value"),
        ('{"cifar10_test_200ep": 150.0}', "outside the training range"),
    ],
    ids=["unknown_condition", "nan_condition", "infinite_condition", "out_of_range_condition"],
)
def test_condition_case(conditions, fragment, discrete_ckpt, files, capsys, tmp_path):
    args = generate_args(
        [NB201_DISCRETE, files["tiny.yaml"], files["tiny_discrete.yaml"]],
        discrete_ckpt,
        tmp_path / "out.csv",
        f"--conditions={conditions}",
    )
    expect_error(args, fragment, capsys, tmp_path)


def test_checkpoint_of_another_space_fails_before_loading_weights(score_ckpt, files, capsys, tmp_path):
    expect_error(
        [
            "validate",
            "--config",
            DIFFUSION,
            "--config",
            files["nbgraph_space.yaml"],
            "--ckpt_path",
            score_ckpt,
            f"--trainer.default_root_dir={tmp_path}",
            *QUIET,
        ],
        "was trained on search space 'nb201' but the config's data uses 'nbgraph'",
        capsys,
        tmp_path,
    )


def test_truncated_checkpoint_for_test(truncated_ckpt, capsys, tmp_path):
    expect_error(
        ["test", "--config", QUICKSTART, "--ckpt_path", truncated_ckpt], "not a readable checkpoint", capsys, tmp_path
    )


def test_resume_from_a_corrupt_last_checkpoint(truncated_ckpt, files, capsys, tmp_path):
    folder = tmp_path / "run" / "lightning_logs" / "version_0" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "last.ckpt").write_bytes(Path(truncated_ckpt).read_bytes())
    with pytest.raises(SystemExit) as exit_info:
        main([*tiny_fit(files), f"--trainer.default_root_dir={tmp_path / 'run'}", "--ckpt_path", "last", *QUIET])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    [line] = [x for x in err.splitlines() if x.startswith("error:")]
    assert "last.ckpt': not a readable checkpoint" in line


def test_nan_loss_stops_training_naming_the_step(files, capsys, tmp_path):
    expect_error(
        [*tiny_fit(files), "--model.init_args.lr=1e30", f"--trainer.default_root_dir={tmp_path}", *QUIET],
        "at global step 1; lower model.lr",
        capsys,
        tmp_path,
    )


# --- architecture strings: the library entry point, one line per failure --------------------
SPACES = {
    n: getattr(nag.spaces, n)()
    for n in nag.spaces.__all__
    if isinstance(getattr(nag.spaces, n), type)
    and issubclass(getattr(nag.spaces, n), SearchSpace)
    and getattr(nag.spaces, n) is not SearchSpace
}


def damaged(space: SearchSpace) -> dict[str, str]:
    text = space.to_string(space.sample(1, np.random.default_rng(0))[0])
    return {"empty": "", "junk": "resnet50", "truncated": text[: len(text) // 2], "doubled": text + text}


@pytest.mark.parametrize("space, kind", [(s, k) for s in SPACES for k in ("empty", "junk", "truncated", "doubled")])
def test_architecture_string_case(space, kind):
    text = damaged(SPACES[space])[kind]
    with pytest.raises(InvalidArchitecture) as info:
        SPACES[space].from_string(text)
    message = str(info.value)
    assert "\n" not in message and (SPACES[space].name in message or repr(text)[:30].rstrip("'") in message)
