"""LightningDataModules over architectures (one benchmark) and tasks (several)."""

from nag.datamodules.architecture import ArchitectureDataModule
from nag.datamodules.macro import MacroDataModule
from nag.datamodules.task import TaskDataModule
from nag.datamodules.zc_cells import ZCCellDataModule

__all__ = ["ArchitectureDataModule", "MacroDataModule", "TaskDataModule", "ZCCellDataModule"]
