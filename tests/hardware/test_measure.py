"""``nag measure-latency`` and :func:`nag.hardware.measure_latency`: this machine as a device.
Tiny runs (2-3 NB201 cells, 2 repeats); no assertion on how fast anything is, only that the
table is one ``read_device_table`` accepts, threads and the RNG are left as they were, and bad
input fails in one line."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from nag.cli import main
from nag.errors import ConfigError
from nag.hardware import measure_latency, read_device_table, write_latency_table
from nag.hardware.measure import read_archs
from nag.io.export import input_shape_of
from nag.spaces.mbv3 import MBV3Space, MBV3Subnet
from nag.spaces.nb201 import NB201Space

SPACE = NB201Space()
ARCHS = SPACE.sample(3, np.random.default_rng(1))
FAST = {"warmup": 1, "repeats": 2}
FAST_ARGS = ["--warmup", "1", "--repeats", "2"]


@pytest.mark.parametrize("rounds", [1, 2])
def test_measured_table_round_trips_through_read_device_table(rounds, tmp_path):
    measurements = measure_latency(SPACE, ARCHS, batch_sizes=(2, 1), rounds=rounds, **FAST)
    assert [m.arch for m in measurements] == ARCHS
    for m in measurements:
        for clock in ("wall", "cpu"):
            latency, noise = m.by(clock)
            assert list(latency) == [2, 1] and all(v > 0 for v in latency.values())
            assert all(v >= 0 for v in noise.values())
    for clock, other in (("wall", "cpu"), ("cpu", "wall")):
        path = write_latency_table(SPACE, measurements, tmp_path / f"{clock}.csv", clock=clock)
        with path.open() as f:
            header = next(csv.reader(f))
        assert header == [
            "arch",
            "latency",
            "noise",
            "batch_size",
            "clock",
            f"{other}_latency",
            "latency_bs1",
            "noise_bs1",
        ]
        table = read_device_table(path, SPACE, min_rows=3)
        assert table.archs == ARCHS
        np.testing.assert_allclose(table.latencies, [m.by(clock)[0][2] for m in measurements], rtol=1e-3)


def test_threads_and_the_global_rng_are_restored_even_after_an_error():
    before, state = torch.get_num_threads(), torch.random.get_rng_state()
    measure_latency(SPACE, ARCHS[:1], threads=1, **FAST)
    assert torch.get_num_threads() == before
    assert torch.equal(torch.random.get_rng_state(), state)
    with pytest.raises(ConfigError, match="--input_shape"):
        measure_latency(SPACE, ARCHS[:1], input_shape=(1, 8, 8), threads=1, **FAST)
    assert torch.get_num_threads() == before


def test_a_space_without_a_default_input_shape_must_be_given_one():
    class Renamed(NB201Space):
        name = "nb201_renamed"
        input_shape = None

    with pytest.raises(ConfigError, match="--input_shape: space 'nb201_renamed' has no default input shape"):
        input_shape_of(Renamed())
    assert input_shape_of(Renamed(), [3, 16, 16]) == (3, 16, 16)
    assert input_shape_of(SPACE) == (3, 32, 32)


def test_the_input_shape_follows_the_architecture_where_the_space_says_so():
    mbv3 = MBV3Space()
    arch = MBV3Subnet((((3, 3), (3, 3)),) * 5, 160)
    assert input_shape_of(mbv3) == (3, 224, 224)  # the space's default
    assert input_shape_of(mbv3, None, arch) == (3, 160, 160)  # the subnet's own resolution
    assert input_shape_of(mbv3, [3, 64, 64], arch) == (3, 64, 64)  # a given shape wins
    assert input_shape_of(SPACE, None, ARCHS[0]) == (3, 32, 32)  # other spaces: their one shape


@pytest.mark.usefixtures("single_thread")
def test_each_mbv3_subnet_is_timed_at_its_own_resolution():
    """One batch per size at each subnet's own side, unless --input_shape fixes one for all."""
    seen: list[tuple[int, tuple[int, ...]]] = []

    class Recording(MBV3Space):
        def to_module(self, arch, **kwargs):
            module = super().to_module(arch, **kwargs)
            module.register_forward_pre_hook(lambda _, args: seen.append((arch.resolution, tuple(args[0].shape))))
            return module

    space = Recording(resolutions=[32, 48])  # tiny sides: the same code paths, fast
    archs = [MBV3Subnet((((3, 3), (3, 3)),) * 5, side) for side in (48, 32)]
    args = {"threads": 1, "module_args": {"num_classes": 10}, **FAST}
    measurements = measure_latency(space, archs, batch_sizes=(1, 2), **args)
    assert [m.arch for m in measurements] == archs
    assert all(v > 0 for m in measurements for v in m.by("wall")[0].values())
    assert set(seen) == {(r, (b, 3, r, r)) for r in (32, 48) for b in (1, 2)}
    seen.clear()
    measure_latency(space, archs, input_shape=(3, 40, 40), **args)
    assert {shape for _, shape in seen} == {(1, 3, 40, 40)}


def test_archs_come_from_a_text_file_or_generate_output(tmp_path):
    a, b = (SPACE.to_string(x) for x in ARCHS[:2])
    text = tmp_path / "archs.txt"
    text.write_text(f"# measured on my laptop\n{a}\n\n{b}\n{a}\n")
    assert read_archs(text, SPACE) == ARCHS[:2]
    generated = tmp_path / "generated.csv"
    generated.write_text(f"sample,valid,arch\n0,True,{b}\n1,False,\n2,True,{b}\n3,True,{a}\n")
    assert read_archs(generated, SPACE) == [ARCHS[1], ARCHS[0]]


def run_cli(args: list[str], capsys) -> tuple[int | None, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["measure-latency", *args])
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.mark.usefixtures("single_thread")
def test_cli_measures_random_cells_and_generated_ones(tmp_path, capsys):
    output = tmp_path / "my_device.csv"
    main(
        [
            "measure-latency",
            "--num_random",
            "3",
            "--seed",
            "2",
            "--batch_size",
            "2",
            *FAST_ARGS,
            "--output",
            str(output),
        ]
    )
    assert f"wrote 3 rows to {output}" in capsys.readouterr().out
    table = read_device_table(output, SPACE, min_rows=3)
    with output.open() as f:
        rows = list(csv.DictReader(f))
    assert {r["batch_size"] for r in rows} == {"2"} and all(float(r["latency_bs1"]) > 0 for r in rows)
    generated = tmp_path / "generated.csv"
    generated.write_text("sample,arch\n" + "".join(f"{i},{SPACE.to_string(a)}\n" for i, a in enumerate(table.archs)))
    again = tmp_path / "again.csv"
    main(
        ["measure-latency", "--archs", str(generated), *FAST_ARGS, "--clock", "cpu", "--quiet", "--output", str(again)]
    )
    assert capsys.readouterr().out == ""
    assert read_device_table(again, SPACE, min_rows=3).archs == table.archs
    with again.open() as f:
        assert {r["clock"] for r in csv.DictReader(f)} == {"cpu"}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--space", "nb999", "--num_random", "2"], "--space 'nb999': unknown search space"),
        (["--space", "nbgraph", "--num_random", "2"], "--space 'nbgraph': it builds no network"),
        (["--num_random", "0"], "--num_random 0: measure at least one architecture"),
        (["--num_random", "two"], "num_random"),
        ([], "pass either --archs FILE"),
        (["--archs", "ARCHS", "--num_random", "2"], "pass either --archs FILE"),
        (["--archs", "BAD"], "line 2: '|nor_conv_3x3~0|' does not parse"),
        (["--archs", "missing.txt"], "--archs 'missing.txt': no such file"),
        (["--num_random", "2", "--repeats", "0"], "need each >= 1"),
        (["--num_random", "2", "--repeats", "2", "--rounds", "3"], "rounds <= repeats"),
        (["--num_random", "2", "--output", "my_device.json"], "--output 'my_device.json': a device table is a .csv"),
        (["--num_random", "2", "--clock", "cpu", "--threads", "2"], "--clock cpu --threads 2"),
        (["--num_random", "2", "--clock", "gpu"], "--clock 'gpu': expected 'wall'"),
    ],
)
def test_bad_input_fails_in_one_line_and_writes_nothing(args, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("ARCHS").write_text(SPACE.to_string(ARCHS[0]) + "\n")
    Path("BAD").write_text(SPACE.to_string(ARCHS[0]) + "\n|nor_conv_3x3~0|\n")
    if "--output" not in args:
        args = [*args, "--output", "my_device.csv"]
    code, _, err = run_cli(args if "--repeats" in args else [*args, *FAST_ARGS], capsys)
    assert code == 2
    assert err.startswith("error: ") and fragment in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ARCHS", "BAD"]
