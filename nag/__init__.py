"""nag: generate neural architectures with graph diffusion, flows and transformers.

import nag
generator = nag.load_generator("runs/.../last.ckpt")   # model and search space from the file
samples = generator.sample(100, seed=0)                 # a GeneratedSet of architectures
samples = nag.generate(generator, nag.GenerationRequest(nag.Sampling(100, seed=0, steps=10)))  # a typed request
"""

from __future__ import annotations

__all__ = [
    "Conditioning",
    "DeviceBudget",
    "GeneratedSet",
    "GenerationRequest",
    "Generator",
    "PredictorGuidance",
    "Sampling",
    "generate",
    "load_generator",
]


def __getattr__(name: str) -> object:
    """The API resolves on first use, so ``import nag.spaces`` does not pull in Lightning."""
    if name in __all__:
        from nag import generation

        return getattr(generation, name)
    raise AttributeError(f"module 'nag' has no attribute {name!r}")
