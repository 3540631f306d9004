"""Token sequences of constrained macro architectures, generated once and cached to a file."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import Dataset

from nag.datamodules.architecture import SPLITS, split_by_key
from nag.datamodules.macro_evolution import ZCFitness, generate_records
from nag.datamodules.split_datamodule import SplitDataModule
from nag.errors import ConfigError, DataFileError
from nag.io.atomic import write_text_atomically
from nag.spaces.macro import MacroConstraints
from nag.spaces.macro_tokens import PREFIX_LENGTH, MacroTokenizer


class TokenDataset(Dataset):
    """Padded token rows ``[N, max_length]``; items are dicts ``tokens``."""

    def __init__(self, tokens: torch.Tensor) -> None:
        self.tokens = tokens

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"tokens": self.tokens[i]}


class MacroDataModule(SplitDataModule):
    """Macro architectures from :func:`generate_records` as token sequences.

    The records are written to ``path`` (JSON) with the settings that made them and read back
    on later runs; a file made with other settings is refused rather than silently reused.
    Splits hold out whole constraint settings, so validation asks for budgets never seen.

    Args:
        tokenizer: vocabulary, grammar and the macro space.
        path: the cache file.
        images: image CSV the ZC fitness runs on (MNIST, ``../shared/data/images``).
        proxy: the ZC proxy maximised (``nag.zc.PROXIES``), on ``proxy_batch_size`` images.
        num_settings, population_size, sample_size, cycles, top_k: evolution per setting
            (:func:`generate_records`).
        split: fractions of settings for train/val/test.
        seed: fixes the settings, the evolutions and the split.
    """

    def __init__(
        self,
        tokenizer: MacroTokenizer,
        path: str,
        images: str = "../shared/data/images/mnist_5k.csv.gz",
        proxy: str = "synflow",
        proxy_batch_size: int = 16,
        num_settings: int = 200,
        population_size: int = 8,
        sample_size: int = 3,
        cycles: int = 16,
        top_k: int = 6,
        split: tuple[float, float, float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if num_settings < 3:
            raise ConfigError(f"data.num_settings={num_settings}: need at least 3 (one per split)")
        self.tokenizer, self.space = tokenizer, tokenizer.space
        self.path, self.images, self.proxy, self.proxy_batch_size = Path(path), images, proxy, proxy_batch_size
        self.evolution = {
            "num_settings": num_settings,
            "population_size": population_size,
            "sample_size": sample_size,
            "cycles": cycles,
            "top_k": top_k,
            "seed": seed,
        }
        self.split, self.seed, self.batch_size, self.num_workers = tuple(split), seed, batch_size, num_workers

    def generation_config(self) -> dict:
        """What determines the records: compared with the cache file's before reusing it."""
        return {
            "tokenizer": self.tokenizer.config(),
            "proxy": self.proxy,
            "proxy_batch_size": self.proxy_batch_size,
            "images": Path(self.images).name,
            **self.evolution,
        }

    @cached_property
    def records(self) -> list[dict]:
        config = self.generation_config()
        if self.path.is_file():
            try:
                stored = json.loads(self.path.read_text())
                stored_config, records = stored["config"], stored["records"]
            except (ValueError, KeyError, TypeError):
                raise DataFileError(
                    f"data.path {str(self.path)!r} is not a macro-data file; delete it or change data.path"
                ) from None
            if stored_config != config:
                differs = sorted(k for k in config if stored_config.get(k) != config[k])
                raise DataFileError(
                    f"data.path {str(self.path)!r} was generated with other settings ({', '.join(differs)}); "
                    "delete it to regenerate or point data.path elsewhere"
                )
            return records
        n = self.evolution["num_settings"]
        rank_zero_info(f"Generating macro data: {n} settings, ZC fitness {self.proxy!r} -> {self.path}")

        def progress(i: int) -> None:
            if (i + 1) % 25 == 0:
                rank_zero_info(f"  {i + 1}/{n} settings")

        fitness = ZCFitness(self.images, self.proxy, self.proxy_batch_size, self.seed)
        records = generate_records(self.tokenizer, fitness, **self.evolution, progress=progress)
        write_text_atomically(self.path, json.dumps({"config": config, "records": records}))
        return records

    @cached_property
    def split_indices(self) -> dict[str, np.ndarray]:
        keys = [str(r["setting"]) for r in self.records]
        parts = dict(zip(SPLITS, split_by_key(keys, self.split, self.seed)))
        for name in ("train", "val"):
            if len(parts[name]) == 0:
                raise ConfigError(
                    f"data.split {self.split} leaves the {name} split empty "
                    f"({len(self.records)} records); raise num_settings or the fraction"
                )
        return parts

    def constraints(self, split: str) -> list[MacroConstraints]:
        """The distinct constraint settings of a split, in record order."""
        fields = MacroConstraints._fields
        rows = [self.records[i] for i in self.split_indices[split]]
        return list(dict.fromkeys(MacroConstraints(*(r[f] for f in fields)) for r in rows))

    def spec(self) -> dict:
        """Stored in the model's checkpoint: the tokenizer rebuilds vocabulary and grammar."""
        return {"space": self.space.identity, "tokenizer": self.tokenizer.config(), "prefix_length": PREFIX_LENGTH}

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "datasets"):
            return
        fields = MacroConstraints._fields
        sequences = [
            self.tokenizer.encode(self.space.from_string(r["arch"]), MacroConstraints(*(r[f] for f in fields)))
            for r in self.records
        ]
        tokens = self.tokenizer.pad(sequences)
        self.datasets = {name: TokenDataset(tokens[idx]) for name, idx in self.split_indices.items()}
