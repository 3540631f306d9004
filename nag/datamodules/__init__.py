"""LightningDataModules over architectures (one benchmark) and tasks (several)."""

from nag.datamodules.architecture import ArchitectureDataModule
from nag.datamodules.task import TaskDataModule

__all__ = ["ArchitectureDataModule", "TaskDataModule"]
