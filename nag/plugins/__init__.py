"""Lightning plugins of nag."""

from nag.plugins.atomic_checkpoint_io import AtomicCheckpointIO

__all__ = ["AtomicCheckpointIO"]
