"""A small decoder-only transformer that writes macro architectures for a task and budgets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from nag.errors import ConfigError
from nag.lightning_modules.finite_loss import ensure_finite
from nag.spaces.macro import MacroArch, MacroConstraints
from nag.spaces.macro_tokens import PREFIX_LENGTH, MacroTokenizer


class MacroTransformerModule(pl.LightningModule):
    """Causal transformer over :class:`MacroTokenizer` sequences.

    The constraint prefix is given, never predicted: the loss covers the architecture tokens
    only. Logits are restricted to the tokens the grammar allows at the next position (the
    same table in training and decoding), so every sampled sequence parses. Validation also
    samples one architecture per held-out sequence and logs the share within the exact
    budgets (``val/constraint_share``) next to that of uniform random architectures of the
    space for the same constraints (``val/random_share``).

    ``data_spec`` (the datamodule's ``spec()``) is saved in the checkpoint, so a loaded model
    rebuilds its tokenizer, cell vocabulary included.
    """

    def __init__(
        self,
        data_spec: dict[str, Any],
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 3,
        dim_feedforward: int = 128,
        dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer = MacroTokenizer.from_config(data_spec["tokenizer"])
        length, vocab = self.tokenizer.max_length, self.tokenizer.vocab_size
        self.register_buffer("grammar", self.tokenizer.grammar_mask(), persistent=False)
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(length), persistent=False)
        self.embed = nn.Embedding(vocab, d_model)
        self.position = nn.Embedding(length, d_model)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, T, V]`` for the token after each position; tokens the grammar forbids
        there are ``-inf``."""
        t = tokens.shape[1]
        h = self.embed(tokens) + self.position.weight[:t]
        h = self.blocks(h, mask=self.causal[:t, :t], is_causal=True)
        logits = self.head(h).float()
        return logits.masked_fill(~self.grammar[1 : t + 1], float("-inf"))

    def _loss(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy and token accuracy over architecture tokens (prefix and padding ignored)."""
        logits = self(tokens[:, :-1])
        target = tokens[:, 1:].clone()
        target[:, : PREFIX_LENGTH - 1] = self.tokenizer.pad_id
        keep = target != self.tokenizer.pad_id
        loss = nn.functional.cross_entropy(logits[keep], target[keep])
        accuracy = (logits[keep].argmax(-1) == target[keep]).float().mean()
        return loss, accuracy

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self._loss(batch["tokens"])
        loss = ensure_finite(loss, "training loss", self.global_step)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["tokens"].shape[0])
        return loss

    def _evaluate(self, batch: dict[str, torch.Tensor], batch_idx: int, stage: str) -> None:
        tokens = batch["tokens"]
        n = tokens.shape[0]
        loss, accuracy = self._loss(tokens)
        self.log_dict(
            {f"{stage}/loss": loss, f"{stage}/token_accuracy": accuracy},
            batch_size=n,
            sync_dist=True,
            prog_bar=stage == "val",
        )
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        sampled = self.generate(tokens[:, :PREFIX_LENGTH], generator=generator)
        space, rng = self.tokenizer.space, np.random.default_rng(batch_idx)
        hits, random_hits = 0, 0
        for row, random_arch in zip(sampled.tolist(), space.sample(n, rng)):
            constraints, arch = self.tokenizer.decode(row)
            hits += space.satisfies(arch, constraints)
            random_hits += space.satisfies(random_arch, constraints)
        self.log_dict(
            {f"{stage}/constraint_share": hits / n, f"{stage}/random_share": random_hits / n},
            batch_size=n,
            sync_dist=True,
        )

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    # --- sampling -----------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self, prefix: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Complete constraint prefixes ``[B, PREFIX_LENGTH]`` to full sequences
        ``[B, max_length]`` (``<pad>`` after ``<eos>``); ``temperature == 0`` is greedy."""
        training = self.training
        self.eval()
        tokens = prefix.to(self.device)
        done = torch.zeros(tokens.shape[0], dtype=torch.bool, device=self.device)
        for _ in range(PREFIX_LENGTH, self.tokenizer.max_length):
            logits = self(tokens)[:, -1]
            if temperature == 0:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            nxt = nxt.masked_fill(done, self.tokenizer.pad_id)
            done |= nxt == self.tokenizer.eos_id
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            if bool(done.all()):
                break
        self.train(training)
        pad = tokens.new_full((tokens.shape[0], self.tokenizer.max_length - tokens.shape[1]), self.tokenizer.pad_id)
        return torch.cat([tokens, pad], dim=1)

    def sample(
        self, constraints: MacroConstraints, num_samples: int = 1, temperature: float = 1.0, seed: int = 0
    ) -> list[MacroArch]:
        """``num_samples`` architectures for ``constraints`` (budgets rounded down to the
        tokenizer's bins); the same seed gives the same architectures. They always parse,
        but may exceed the budgets: check with ``tokenizer.space.satisfies``."""
        if temperature < 0:
            raise ConfigError(f"temperature={temperature}: expected >= 0 (0 is greedy)")
        prefix = torch.tensor([self.tokenizer.encode_constraints(constraints)] * num_samples, dtype=torch.long)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        rows = self.generate(prefix, temperature, generator).tolist()
        return [self.tokenizer.decode(row)[1] for row in rows]

    def constraint_share(self, archs: Sequence[MacroArch], constraints: MacroConstraints) -> float:
        """Share of ``archs`` within both (exact, unrounded) budgets of ``constraints``."""
        space = self.tokenizer.space
        return sum(space.satisfies(a, constraints) for a in archs) / max(len(archs), 1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
