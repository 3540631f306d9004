"""Closed-form costs of the hierarchical space: a cell's op nodes and a whole macro network.

Parameter and FLOP counts of any macro architecture are exact and closed form: a cell's cost
is ``q*C**2 + l*C`` per pixel for its width ``C``, plus the input projection. FLOPs follow
``torch.utils.flop_counter``: 2 per multiply-accumulate of convolutions and linear layers;
BN, activations, pooling and additions are free. :class:`~nag.spaces.cell.CellSpace` and
:class:`~nag.spaces.macro.MacroSpace` answer with these (``cost``, ``params``, ``flops``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

#: Per op node of width ``C``: (q, params l, MACs-per-pixel l) with params ``q*C^2 + l*C`` and
#: MACs per output pixel ``q*C^2 + l*C`` -- BN adds ``2C`` parameters and no MACs.
OP_COST: dict[str, tuple[int, int, int]] = {
    "conv1x1": (1, 2, 0),
    "conv3x3": (9, 2, 0),
    "conv5x5": (25, 2, 0),
    "dwsep3x3": (1, 9 + 2, 9),
    "dwsep5x5": (1, 25 + 2, 25),
    "maxpool3x3": (0, 0, 0),
    "avgpool3x3": (0, 0, 0),
    "skip": (0, 0, 0),
}


def ops_cost(ops: Iterable[str]) -> tuple[int, int, int]:
    """Summed :data:`OP_COST` of a pruned cell's op nodes: ``(q, l_params, l_macs)``."""
    q, lp, lm = 0, 0, 0
    for op in ops:
        dq, dp, dm = OP_COST[op]
        q, lp, lm = q + dq, lp + dp, lm + dm
    return q, lp, lm


def network_cost(
    stem: int,
    stages: Sequence[tuple[tuple[int, int, int], int, int, int]],
    num_classes: int,
    in_channels: int,
    input_size: int,
) -> tuple[int, int]:
    """Closed-form (params, MACs per image) of :class:`~nag.nn.hierarchical_network.HierarchicalNetwork`:
    a 3x3 stem of width ``stem``, then per stage ``(cell cost, channels, stride, repeats)`` (a
    cell cost from :func:`ops_cost`), global pooling and a linear head."""
    width, size = stem, input_size
    params = in_channels * width * 9 + 2 * width
    macs = size * size * in_channels * width * 9
    for (q, lp, lm), c, s, r in stages:
        for k in range(r):
            stride = s if k == 0 else 1
            if width != c or stride != 1:
                size = (size - 1) // stride + 1
                params += width * c + 2 * c
                macs += size * size * width * c
            params += q * c * c + lp * c
            macs += size * size * (q * c * c + lm * c)
            width = c
    return params + width * num_classes + num_classes, macs + width * num_classes
