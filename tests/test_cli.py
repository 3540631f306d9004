"""The ``nag`` command as a user meets it: configs, subcommands and one-line errors."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nag.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "configs" / "quickstart_predictor.yaml")


def nag_command() -> list[str]:
    exe = shutil.which("nag")
    return [exe] if exe else [sys.executable, "-m", "nag.cli"]


def run_main(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr().err


def test_fit_smoke_runs_the_quickstart_end_to_end(tmp_path):
    out = subprocess.run(
        [
            *nag_command(),
            "fit",
            "--config",
            QUICKSTART,
            "--trainer.fast_dev_run=true",
            f"--trainer.default_root_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_fit_then_test_reports_held_out_metrics(tmp_path, capsys):
    main(
        [
            "fit",
            "--config",
            QUICKSTART,
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=5",
            "--trainer.limit_val_batches=2",
            "--trainer.limit_test_batches=2",
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    assert "test/valid_acc_spearman" in capsys.readouterr().out
    assert list(tmp_path.rglob("last.ckpt")), "ModelCheckpoint(save_last=True) should write last.ckpt"


def test_print_config_shows_linked_model_and_data(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", QUICKSTART, "--print_config"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "nag.benchmarks.nbgraph.NBGraphBenchmark" in out and "PredictorModule" in out


def test_configs_compose_later_overrides_earlier(tmp_path, capsys):
    overlay = tmp_path / "citeseer.yaml"
    overlay.write_text("data:\n  init_args:\n    benchmark:\n      init_args:\n        dataset: citeseer\n")
    with pytest.raises(SystemExit):
        main(["fit", "--config", QUICKSTART, "--config", str(overlay), "--print_config"])
    assert "dataset: citeseer" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--data.init_args.targets=[no_such_metric]"], "unknown metric 'no_such_metric'"),
        (["--data.init_args.split=[1,0,0]"], "leaves the val split empty"),
        (["--data.init_args.benchmark.init_args.dataset=imdb"], "unknown dataset 'imdb'"),
        (["--data.init_args.train_size=0"], "data.train_size=0"),
        (["--data.init_args.targets=[]"], "at least one data.targets"),
    ],
)
def test_bad_config_values_fail_in_one_line(args, fragment, capsys, tmp_path):
    code, err = run_main(["fit", "--config", QUICKSTART, f"--trainer.default_root_dir={tmp_path}", *args], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], err
    assert "Traceback" not in err


def test_missing_data_file_names_the_config_key(capsys, tmp_path):
    config = str(ROOT / "configs" / "nb201" / "predictor.yaml")
    code, err = run_main(
        [
            "fit",
            "--config",
            config,
            "--data.init_args.benchmark.init_args.path=/no/such/nb201.csv",
            f"--trainer.default_root_dir={tmp_path}",
        ],
        capsys,
    )
    assert code == 2
    assert "error: data.init_args.benchmark.init_args.path: data file '/no/such/nb201.csv' not found" in err


def test_debug_flag_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="unknown dataset"):
        main(
            [
                "fit",
                "--config",
                QUICKSTART,
                "--data.init_args.benchmark.init_args.dataset=imdb",
                "--debug",
                f"--trainer.default_root_dir={tmp_path}",
            ]
        )


def test_commands_run_on_one_cpu_thread_unless_the_environment_says():
    probe = (
        "import sys\nfrom nag.cli import main\ntry:\n    main(['export', '--space', 'nb201'])\n"
        "except SystemExit:\n    pass\nimport torch\nprint(torch.get_num_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    for given, expected in [(None, "1"), ("2", "2")]:
        out = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
            env=env if given is None else {**env, "OMP_NUM_THREADS": given},
        )
        assert out.stdout.split()[-1:] == [expected], out.stderr[-2000:]
