"""Errors a user can fix: each carries one line naming the value, what was expected and the fix.

The CLI prints these as ``error: <message>`` and exits non-zero instead of a traceback.
"""


class NagError(Exception):
    """Base class for user-facing errors (bad input, missing files, wrong config)."""


class InvalidArchitecture(NagError, ValueError):
    """An architecture (string, tensors or object) is not a member of its search space."""


class UnknownMetric(NagError, KeyError):
    """A metric/target name that the benchmark does not provide."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ArchitectureNotInBenchmark(NagError, KeyError):
    """A valid architecture that the tabular benchmark has no entry for."""

    def __str__(self) -> str:
        return str(self.args[0])


class DataFileError(NagError, FileNotFoundError):
    """A data file named in the config is missing, empty or malformed."""


class ConfigError(NagError, ValueError):
    """A config value is inconsistent (empty split, wrong search space for a checkpoint, ...)."""
