import csv

import numpy as np
import pytest
import torch

from nag.errors import InvalidArchitecture, NagError
from nag.nn.flops import count_flops, count_params
from nag.spaces import NB201Space, NBGraphSpace

pytestmark = pytest.mark.usefixtures("single_thread")

SPACE = NB201Space()
ALL_SKIP = ("skip_connect",) * 6
CONV_POOL = ("nor_conv_3x3", "avg_pool_3x3", "skip_connect", "none", "nor_conv_1x1", "skip_connect")


def closed_form_params(arch, C=16, N=5, in_channels=3, num_classes=10) -> int:
    """Hand count: stem conv + BN; per cell 9C^2 + 2C per conv3x3 and C^2 + 2C per conv1x1;
    each reduction block has two 3x3 ReLU-Conv-BN and a 1x1 shortcut conv; final BN + linear."""

    def per_cell(c: int) -> int:
        return arch.count("nor_conv_3x3") * (9 * c * c + 2 * c) + arch.count("nor_conv_1x1") * (c * c + 2 * c)

    def reduction(ci: int, co: int) -> int:
        return 9 * ci * co + 2 * co + 9 * co * co + 2 * co + ci * co

    return (
        9 * in_channels * C
        + 2 * C
        + N * (per_cell(C) + per_cell(2 * C) + per_cell(4 * C))
        + reduction(C, 2 * C)
        + reduction(2 * C, 4 * C)
        + 2 * 4 * C
        + 4 * C * num_classes
        + num_classes
    )


@pytest.fixture(scope="module")
def nb201_rows(shared_data):
    with open(shared_data / "nb201" / "nb201.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["cifar10_params_M"]]
    assert len(rows) == 9445
    return rows


def test_closed_form_params_match_every_table_row(nb201_rows):
    """The table has 6 decimals of millions, i.e. exact integers: compare exactly."""
    for row in nb201_rows:
        arch = SPACE.from_string(row["arch_str"])
        assert closed_form_params(arch) == round(float(row["cifar10_params_M"]) * 1e6), row["arch_str"]


def test_built_params_and_flops_equal_the_table_on_a_seeded_sample(nb201_rows):
    rng = np.random.default_rng(0)
    for i in rng.choice(len(nb201_rows), size=12, replace=False):
        row = nb201_rows[i]
        arch = SPACE.from_string(row["arch_str"])
        module = SPACE.to_module(arch)
        assert count_params(module) == closed_form_params(arch) == round(float(row["cifar10_params_M"]) * 1e6)
        assert count_flops(module, (3, 32, 32)) == round(float(row["cifar10_flops_M"]) * 1e6), row["arch_str"]


def test_forward_shapes_follow_the_keyword_arguments():
    module = SPACE.to_module(CONV_POOL, num_classes=7, in_channels=1, C=8, N=2)
    assert module(torch.randn(3, 1, 16, 16)).shape == (3, 7)
    assert count_params(module) == closed_form_params(CONV_POOL, C=8, N=2, in_channels=1, num_classes=7)
    cells = [m for m in module.cells if type(m).__name__ == "NB201Cell"]
    assert len(cells) == 3 * 2


def test_flops_of_a_small_all_skip_network_by_hand():
    """C=4, N=1, 1x8x8 input, 3 classes; skip cells cost nothing."""
    stem = 9 * 1 * 4 * 64 + 2 * 4 * 64  # conv 3x3 1->4 at 8x8, BN
    reduction1 = (
        4 * 64
        + 9 * 4 * 8 * 16
        + 2 * 8 * 16  # ReLU on 4x8x8, conv 3x3 s2 4->8 at 4x4, BN
        + 8 * 16
        + 9 * 8 * 8 * 16
        + 2 * 8 * 16  # ReLU, conv 3x3 8->8 at 4x4, BN
        + 4 * (4 * 16)
        + 4 * 8 * 16  # avg pool 2x2 -> 4x4x4 outputs, conv 1x1 4->8
    )
    reduction2 = 8 * 16 + 9 * 8 * 16 * 4 + 2 * 16 * 4 + 16 * 4 + 9 * 16 * 16 * 4 + 2 * 16 * 4 + 4 * (8 * 4) + 8 * 16 * 4
    head = 2 * 16 * 4 + 16 * 4 + (2 + 1) * (2 + 1) * 16 + 16 * 3  # BN, ReLU, adaptive pool 2x2->1, linear
    module = SPACE.to_module(ALL_SKIP, num_classes=3, in_channels=1, C=4, N=1)
    assert count_flops(module, (1, 8, 8)) == stem + reduction1 + reduction2 + head == 33600


def test_flops_of_cell_ops_by_hand():
    """A conv3x3 edge adds ReLU + 9C^2 MACs + BN per position; avg pool 3x3 adds 9 per element."""
    small = {"num_classes": 3, "in_channels": 1, "C": 4, "N": 1}
    base = count_flops(SPACE.to_module(ALL_SKIP, **small), (1, 8, 8))
    arch = ("nor_conv_3x3", "avg_pool_3x3", "none", "skip_connect", "skip_connect", "skip_connect")
    extra = sum(c * hw * (1 + 9 * c + 2) + 9 * c * hw for c, hw in ((4, 64), (8, 16), (16, 4)))
    assert count_flops(SPACE.to_module(arch, **small), (1, 8, 8)) == base + extra


def test_flop_counting_leaves_module_state_alone():
    module = SPACE.to_module(CONV_POOL, C=4, N=1)
    module.train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    count_flops(module, (3, 8, 8))
    assert module.training and all(m.training for m in module.modules())
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_none_edges_multiply_by_zero_like_the_official_code():
    module = SPACE.to_module(("none",) * 6, C=4, N=1).eval()
    features = module.cells[0](torch.randn(2, 4, 8, 8))
    assert torch.equal(features, torch.zeros_like(features))


def test_invalid_architecture_and_spaces_without_builder():
    with pytest.raises(InvalidArchitecture, match="unknown edge op"):
        SPACE.to_module(("conv_5x5",) * 6)
    with pytest.raises(NagError, match="no network builder"):
        NBGraphSpace().to_module(NBGraphSpace().sample(1, np.random.default_rng(0))[0])
