"""The generator modules by name: a checkpoint records the name of the class that wrote it
(:meth:`GeneratorName.on_save_checkpoint`), and loading looks the name up here, never a class
path read from the file nor a guess from hyper-parameters."""

from __future__ import annotations

from typing import Any, ClassVar

#: Key of the generator's registry name in a checkpoint.
CHECKPOINT_KEY = "nag_generator"


class GeneratorName:
    """Mixin of every generator module: its registry name, written into each checkpoint."""

    generator_name: ClassVar[str]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.generator_name


def generator_classes() -> dict[str, type]:
    """``name -> class`` of every generator module (imported here, where they are all known)."""
    from nag.lightning_modules.cell_flow import CellFlowModule
    from nag.lightning_modules.discrete_diffusion import DiscreteDiffusionModule
    from nag.lightning_modules.score_diffusion import ScoreDiffusionModule

    return {cls.generator_name: cls for cls in (ScoreDiffusionModule, DiscreteDiffusionModule, CellFlowModule)}
