"""MBV3Space.to_module builds the network OFA's own subnet builder builds: same layers in the
same order (so OFA's weights load into it), the same outputs with those weights, parameter
count, multiply-accumulates (at the subnet's own resolution) and output shape; and ``nag export``
writes it, traced at the subnet's resolution."""

from __future__ import annotations

import csv
import runpy
import sys
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nag.cli import main
from nag.errors import InvalidArchitecture
from nag.nn.flops import count_params
from nag.spaces.mbv3 import MBV3Arch, MBV3Space, MBV3Subnet

pytestmark = pytest.mark.usefixtures("single_thread")

SPACE = MBV3Space()
SMALLEST: MBV3Arch = MBV3Subnet((((3, 3), (3, 3)),) * 5, 160)
LARGEST: MBV3Arch = MBV3Subnet((((7, 6),) * 4,) * 5, 224)
ARCHS = [SMALLEST, LARGEST, *SPACE.sample(3, np.random.default_rng(0))]


@pytest.fixture(scope="module")
def ofa_subnet() -> Callable[..., nn.Module]:
    """``ofa_subnet(ks, e, d, width_mult)``: OFA's own subnet, freshly initialised, from its raw
    lists. ``ofa`` is a test-only dependency (the ``test`` extra); without it these tests skip."""
    pytest.importorskip("ofa", reason="the `ofa` package (nag's `test` extra) builds the reference subnets")
    with pytest.MonkeyPatch.context() as patch:
        # ofa.utils star-imports its ImageNet data loaders, which need torchvision and torch._six
        # (gone since torch 2.0); the network builders use neither, so an empty module stands in.
        patch.setitem(sys.modules, "ofa.utils.my_dataloader", types.ModuleType("ofa.utils.my_dataloader"))
        try:
            from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
        except ImportError as e:
            pytest.skip(f"the installed `ofa` package does not import with this torch: {e}")
    supernets: dict[float, nn.Module] = {}

    def build(ks: list[int], e: list[int], d: list[int], width_mult: float = 1.2) -> nn.Module:
        if width_mult not in supernets:  # as ofa.model_zoo builds ofa_mbv3_d234_e346_k357_w<width>
            supernets[width_mult] = OFAMobileNetV3(
                dropout_rate=0,
                width_mult=width_mult,
                ks_list=[3, 5, 7],
                expand_ratio_list=[3, 4, 6],
                depth_list=[2, 3, 4],
            )
        supernets[width_mult].set_active_subnet(ks=ks, e=e, d=d)
        return supernets[width_mult].get_active_subnet(preserve_weight=False).eval()

    return build


def ofa_macs(module: nn.Module, side: int) -> float:
    """OFA's own count (``count_net_flops``: conv and linear multiply-accumulates, no biases),
    the figure OFA reports as a subnet's FLOPs. It sums in float32, so it is exact to ~1e-7."""
    from ofa.utils.pytorch_utils import count_net_flops

    return count_net_flops(module, (1, 3, side, side))


def macs(module: nn.Module, side: int) -> int:
    """Multiply-accumulates of our network by torch's counter (2 FLOPs per MAC)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module.eval()(torch.zeros(1, 3, side, side))
    return counter.get_total_flops() // 2


def randomise(state: dict[str, torch.Tensor], generator: torch.Generator) -> None:
    """He-scaled weights and BN scales, statistics and shifts away from their defaults, so every
    layer, activation and shortcut shapes the logits (a fresh init in eval mode lets the input's
    signal fade and the logits come out the same for every input)."""
    for name, value in state.items():
        if not value.is_floating_point():
            continue
        if value.dim() > 1:
            value.copy_(torch.randn(value.shape, generator=generator) * (2 / value[0].numel()) ** 0.5)
        elif name.endswith(("running_var", "weight")):
            value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
        else:
            value.copy_(torch.rand(value.shape, generator=generator) * 0.2 - 0.1)


@pytest.mark.parametrize("width_mult", [1.2, 1.0])
@pytest.mark.parametrize("arch", ARCHS, ids=["smallest", "largest", "sample0", "sample1", "sample2"])
def test_the_network_is_ofas_subnet(arch, width_mult, ofa_subnet):
    """Layer for layer: every parameter and BN buffer has OFA's shape in OFA's order, and with
    OFA's weights (randomised) loaded the two compute the same logits."""
    # float64: with weights that keep the signal alive, float32 rounding grows through 20 layers
    ks, e, d, _ = SPACE.to_ofa(arch)
    reference = ofa_subnet(ks, e, d, width_mult=width_mult).double()
    ours = SPACE.to_module(arch, width_mult=width_mult).eval().double()
    assert count_params(ours) == count_params(reference)
    theirs, mine = reference.state_dict(), ours.state_dict()
    assert [tuple(v.shape) for v in mine.values()] == [tuple(v.shape) for v in theirs.values()]
    generator = torch.Generator().manual_seed(1)
    randomise(theirs, generator)
    ours.load_state_dict(dict(zip(mine, theirs.values())))
    x = torch.randn(2, 3, 128, 128, generator=generator, dtype=torch.float64)  # any side: global pooling
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert got.shape == expected.shape == (2, 1000)
    scale = float(expected.abs().max())
    assert float((expected[0] - expected[1]).abs().max()) > 0.01 * scale  # the logits depend on the input
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9 * scale)


@pytest.mark.parametrize("arch", [SMALLEST, LARGEST], ids=["smallest@160", "largest@224"])
def test_macs_at_the_subnets_resolution_are_ofas(arch, ofa_subnet):
    ks, e, d, side = SPACE.to_ofa(arch)
    ours, shape = SPACE.to_module(arch), SPACE.input_shape_for(arch)
    assert shape == (3, side, side) == (3, arch.resolution, arch.resolution)
    assert ours(torch.zeros(1, *shape)).shape == (1, 1000)
    assert macs(ours, side) == pytest.approx(ofa_macs(ofa_subnet(ks, e, d), side), rel=1e-6)


def test_the_same_layers_cost_more_at_a_larger_resolution():
    """Resolution is part of the subnet: the same stages at 224 cost more than at 160, and the
    network (its parameters) is the same."""
    big = MBV3Subnet(SMALLEST.stages, 224)
    assert count_params(SPACE.to_module(big)) == count_params(SPACE.to_module(SMALLEST))
    assert macs(SPACE.to_module(big), 224) > 1.5 * macs(SPACE.to_module(SMALLEST), 160)


def test_input_shape_for_is_the_subnets_own_image():
    assert SPACE.input_shape == (3, 224, 224)  # the default, for spaces' generic callers
    for r in SPACE.resolutions:
        assert SPACE.input_shape_for(MBV3Subnet(SMALLEST.stages, r)) == (3, r, r)
    with pytest.raises(InvalidArchitecture, match="resolution 100 is not one this space searches"):
        SPACE.input_shape_for(MBV3Subnet(SMALLEST.stages, 100))


def test_latency_table_rows_build_ofas_subnets(shared_data, ofa_subnet):
    """The HELP table's raw lists (values in inactive slots included, which OFA ignores): the
    subnet parsed from a row has OFA's parameter count and OFA's MACs at the row's resolution,
    the one the subnet carries."""
    with (shared_data / "mbv3" / "ofa_mbv3_latency.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    space = MBV3Space(resolutions=sorted({int(row["r"]) for row in rows}))
    for i in np.random.default_rng(0).choice(len(rows), size=4, replace=False):
        ks, e, d = ([int(v) for v in rows[i][c].split("-")] for c in ("ks", "e", "d"))
        arch = space.from_ofa(ks, e, d, int(rows[i]["r"]))
        side = space.input_shape_for(arch)[-1]
        assert side == int(rows[i]["r"])
        reference, ours = ofa_subnet(ks, e, d), space.to_module(arch)
        assert count_params(ours) == count_params(reference), rows[i]
        assert macs(ours, side) == pytest.approx(ofa_macs(reference, side), rel=1e-6), rows[i]


def test_keyword_arguments_and_invalid_architectures():
    module = SPACE.to_module(SMALLEST, num_classes=10, in_channels=1, dropout=0.2)
    assert module(torch.randn(2, 1, 64, 64)).shape == (2, 10)  # any input side: global pooling
    assert count_params(SPACE.to_module(SMALLEST)) > count_params(SPACE.to_module(SMALLEST, width_mult=1.0))
    with pytest.raises(InvalidArchitecture, match="stage 1 layer 1 has kernel size 9"):
        SPACE.to_module(MBV3Subnet((((9, 3), (3, 3)),) + SMALLEST.stages[1:], 160))
    with pytest.raises(InvalidArchitecture, match="expected MBV3Subnet"):
        SPACE.to_module(SMALLEST.stages)


def test_nag_export_writes_the_network(tmp_path: Path, capsys):
    arch = SPACE.to_string(SMALLEST)
    for output in ("model.py", "model.pt2"):
        main(
            [
                "export",
                *("--arch", arch, "--space", "ofa_mbv3", "--output", str(tmp_path / output)),
                *("--input_shape", "[3,64,64]", "--module_args", '{"num_classes": 10}'),
            ]
        )
        assert capsys.readouterr().out.strip() == f"wrote {tmp_path / output}"
    expected = count_params(SPACE.to_module(SMALLEST, num_classes=10))
    rebuilt = runpy.run_path(str(tmp_path / "model.py"))["Network"]().eval()
    assert count_params(rebuilt) == expected
    program = torch.export.load(str(tmp_path / "model.pt2")).module()
    with torch.no_grad():
        assert rebuilt(torch.randn(3, 3, 64, 64)).shape == program(torch.randn(3, 3, 64, 64)).shape == (3, 10)


@pytest.mark.parametrize("resolution", [160, 192])
def test_nag_export_traces_at_the_subnets_resolution(resolution: int, tmp_path: Path, capsys):
    """Without --input_shape the network is traced and checked at the subnet's own resolution,
    and the written file says so (its INPUT_SHAPE, used when run as a script)."""
    arch = MBV3Subnet(SMALLEST.stages, resolution)
    output = tmp_path / "model.py"
    main(
        [
            "export",
            *("--arch", SPACE.to_string(arch), "--space", "ofa_mbv3", "--output", str(output)),
            *("--module_args", '{"num_classes": 10}'),
        ]
    )
    assert capsys.readouterr().out.strip() == f"wrote {output}"
    written = runpy.run_path(str(output), run_name="__main__")
    assert written["INPUT_SHAPE"] == (3, resolution, resolution)
    assert written["ARCH"] == SPACE.to_string(arch) and written["ARCH"].endswith(f"|r={resolution}")
    assert capsys.readouterr().out.strip().endswith("output (2, 10)")
