"""Macro architectures as token sequences behind a task/constraint prefix.

``<bos> classes_N size_S params_i flops_j  stem_C  (cell_k ch_C stride_S repeat_R)*  <eos>``

The prefix states the task (number of classes, input size) and the budgets as log-spaced
bins; the body is the architecture over the space's cell vocabulary. The grammar is regular,
so which tokens may stand at each position is one boolean table (:meth:`grammar_mask`),
used identically in training and in constrained decoding: every decoded body parses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from nag.errors import ConfigError, InvalidArchitecture
from nag.spaces.macro import MacroArch, MacroConstraints, MacroSpace, Stage

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
#: ``<bos>`` and the four constraint tokens.
PREFIX_LENGTH = 5
_FIELDS = 4  # tokens per stage


def budget_edges(low: float, high: float, num_bins: int) -> tuple[int, ...]:
    """``num_bins`` log-spaced integer budgets from ``low`` to ``high`` (the bins' values)."""
    if not 0 < low < high or num_bins < 2:
        raise ConfigError(f"budget range ({low}, {high}) with {num_bins} bins: need 0 < low < high and >= 2 bins")
    return tuple(sorted({round(float(v)) for v in np.geomspace(low, high, num_bins)}))


class MacroTokenizer:
    """Maps ``(MacroConstraints, MacroArch)`` to token ids and back.

    Args:
        space: a :class:`MacroSpace` with a cell vocabulary (cell tokens are its indices).
        num_classes, input_sizes: the tasks the prefix can state.
        in_channels: input channels of every task (not a token).
        params_range, flops_range: lowest and highest budget; ``num_bins`` log-spaced values
            each. A budget is encoded as the largest bin value not above it, so an
            architecture within the encoded budget is within the stated one.
    """

    def __init__(
        self,
        space: MacroSpace,
        num_classes: Sequence[int] = (10,),
        input_sizes: Sequence[int] = (28,),
        in_channels: int = 1,
        params_range: tuple[float, float] = (1e3, 1e6),
        flops_range: tuple[float, float] = (1e5, 1e9),
        num_bins: int = 16,
    ) -> None:
        if space.cells is None:
            raise ConfigError("tokenizer.space has no cell vocabulary; give MacroSpace cells or num_cells")
        self.space = space
        self.num_classes, self.input_sizes = tuple(map(int, num_classes)), tuple(map(int, input_sizes))
        self.in_channels, self.num_bins = int(in_channels), int(num_bins)
        self.params_range, self.flops_range = tuple(map(float, params_range)), tuple(map(float, flops_range))
        self.params_edges = budget_edges(*self.params_range, num_bins)
        self.flops_edges = budget_edges(*self.flops_range, num_bins)
        groups = {
            "classes": [f"classes_{n}" for n in self.num_classes],
            "size": [f"size_{s}" for s in self.input_sizes],
            "params": [f"params_{i}" for i in range(len(self.params_edges))],
            "flops": [f"flops_{i}" for i in range(len(self.flops_edges))],
            "stem": [f"stem_{c}" for c in space.stem_channels],
            "cell": [f"cell_{k}" for k in range(len(space.cells))],
            "ch": [f"ch_{c}" for c in space.channels],
            "stride": [f"stride_{s}" for s in space.strides],
            "repeat": [f"repeat_{r}" for r in space.repeats],
        }
        self.tokens: tuple[str, ...] = (PAD, BOS, EOS, *(t for g in groups.values() for t in g))
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.pad_id, self.bos_id, self.eos_id = self.index[PAD], self.index[BOS], self.index[EOS]
        self._groups = {name: [self.index[t] for t in toks] for name, toks in groups.items()}
        self.max_length = PREFIX_LENGTH + 1 + _FIELDS * space.max_stages + 1

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def config(self) -> dict:
        """Everything that defines the vocabulary and grammar: stored in checkpoints."""
        return {
            "space": self.space.config(),
            "num_classes": list(self.num_classes),
            "input_sizes": list(self.input_sizes),
            "in_channels": self.in_channels,
            "params_range": list(self.params_range),
            "flops_range": list(self.flops_range),
            "num_bins": self.num_bins,
        }

    @classmethod
    def from_config(cls, config: dict) -> MacroTokenizer:
        rest = {k: v for k, v in config.items() if k != "space"}
        return cls(MacroSpace(**config["space"]), **rest)

    # --- constraints --------------------------------------------------------------------
    @staticmethod
    def _bin(value: float, edges: Sequence[int], field: str) -> int:
        i = int(np.searchsorted(edges, value, side="right")) - 1
        if i < 0:
            raise ConfigError(
                f"{field}={value:g} is below the smallest budget {edges[0]}; raise it or lower the tokenizer's range"
            )
        return i

    def quantize(self, constraints: MacroConstraints) -> MacroConstraints:
        """``constraints`` with budgets rounded down to bin values (what the prefix states)."""
        return self.decode_constraints(self.encode_constraints(constraints))

    def encode_constraints(self, constraints: MacroConstraints) -> list[int]:
        """``<bos>`` and the four constraint tokens."""
        nc, size, p, f, c = constraints
        if nc not in self.num_classes:
            raise ConfigError(f"num_classes={nc}: the tokenizer knows {list(self.num_classes)}")
        if size not in self.input_sizes:
            raise ConfigError(f"input_size={size}: the tokenizer knows {list(self.input_sizes)}")
        if c != self.in_channels:
            raise ConfigError(f"in_channels={c}: the tokenizer was built for {self.in_channels}")
        return [
            self.bos_id,
            self.index[f"classes_{nc}"],
            self.index[f"size_{size}"],
            self.index[f"params_{self._bin(p, self.params_edges, 'max_params')}"],
            self.index[f"flops_{self._bin(f, self.flops_edges, 'max_flops')}"],
        ]

    def decode_constraints(self, ids: Sequence[int]) -> MacroConstraints:
        self._check(ids[:PREFIX_LENGTH])
        names = [self.tokens[i] for i in ids[1:PREFIX_LENGTH]]
        values = [int(t.rsplit("_", 1)[1]) for t in names]
        return MacroConstraints(
            values[0], values[1], self.params_edges[values[2]], self.flops_edges[values[3]], self.in_channels
        )

    # --- whole sequences ----------------------------------------------------------------
    def encode(self, arch: MacroArch, constraints: MacroConstraints) -> list[int]:
        """Token ids ``<bos> ... <eos>`` (no padding)."""
        self.space.validate(arch)
        body = [self.index[f"stem_{arch.stem}"]]
        for cell, c, s, r in arch.stages:
            body += [
                self.index[f"cell_{self.space.cell_id(cell)}"],
                self.index[f"ch_{c}"],
                self.index[f"stride_{s}"],
                self.index[f"repeat_{r}"],
            ]
        return [*self.encode_constraints(constraints), *body, self.eos_id]

    def decode(self, ids: Sequence[int]) -> tuple[MacroConstraints, MacroArch]:
        """Inverse of :meth:`encode`; trailing padding after ``<eos>`` is ignored.
        Raises :class:`InvalidArchitecture` naming the first token that breaks the grammar."""
        ids = [int(i) for i in ids]
        if self.eos_id not in ids:
            raise InvalidArchitecture(f"macro tokens {self.to_text(ids)!r} have no {EOS}; the sequence is cut short")
        end = ids.index(self.eos_id)
        if any(i != self.pad_id for i in ids[end + 1 :]):
            raise InvalidArchitecture(f"macro tokens {self.to_text(ids)!r} continue after {EOS}")
        self._check(ids[: end + 1])
        constraints = self.decode_constraints(ids)
        values = [int(self.tokens[i].rsplit("_", 1)[1]) for i in ids[PREFIX_LENGTH:end]]
        stem, fields = values[0], values[1:]
        stages = tuple(
            Stage(self.space.cells[fields[k]], fields[k + 1], fields[k + 2], fields[k + 3])
            for k in range(0, len(fields), _FIELDS)
        )
        return constraints, MacroArch(stem, stages)

    def to_text(self, ids: Sequence[int]) -> str:
        return " ".join(self.tokens[int(i)] if 0 <= int(i) < len(self.tokens) else f"<{int(i)}?>" for i in ids)

    def pad(self, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
        """``[B, max_length]`` int64, right-padded with ``<pad>``."""
        out = torch.full((len(sequences), self.max_length), self.pad_id, dtype=torch.long)
        for i, seq in enumerate(sequences):
            out[i, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        return out

    # --- grammar ------------------------------------------------------------------------
    def allowed(self, position: int) -> list[int]:
        """Token ids that may stand at ``position`` of a sequence that has not ended yet."""
        if position < PREFIX_LENGTH:
            return (
                [self.bos_id] if position == 0 else self._groups[("classes", "size", "params", "flops")[position - 1]]
            )
        if position == PREFIX_LENGTH:
            return self._groups["stem"]
        stage, field = divmod(position - PREFIX_LENGTH - 1, _FIELDS)
        if field:
            return self._groups[("ch", "stride", "repeat")[field - 1]]
        out = self._groups["cell"] if stage < self.space.max_stages else []
        return out + [self.eos_id] if stage >= self.space.min_stages else out

    def grammar_mask(self) -> torch.Tensor:
        """``[max_length, vocab]`` bool: ``mask[p, t]`` when token ``t`` may stand at position ``p``."""
        mask = torch.zeros(self.max_length, self.vocab_size, dtype=torch.bool)
        for p in range(self.max_length):
            mask[p, self.allowed(p)] = True
        return mask

    def _check(self, ids: Sequence[int]) -> None:
        if len(ids) > self.max_length:
            raise InvalidArchitecture(f"macro tokens {self.to_text(ids)!r} exceed {self.max_length} tokens")
        for p, i in enumerate(ids):
            if i not in self.allowed(p):
                raise InvalidArchitecture(
                    f"macro tokens: {self.to_text([i])!r} cannot stand at position {p} of {self.to_text(ids)!r}; "
                    f"expected one of {self.to_text(self.allowed(p))}"
                )

    def __repr__(self) -> str:
        return f"MacroTokenizer({self.space!r}, vocab={self.vocab_size}, max_length={self.max_length})"
