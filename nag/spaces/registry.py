"""Search spaces by name: how a checkpoint's space is rebuilt without running anything it names.

A checkpoint stores its space as ``{"name", "init_args"}`` (:attr:`SearchSpace.build_config`).
Only registered classes are constructed, never a class path read from the file, so a shared
checkpoint cannot make nag import or call arbitrary code. nag's own spaces are registered; a
new space registers itself with :func:`register_space` (or is passed explicitly).
:func:`resolve_space` is what a user names on the command line (``nag export --space``): a
registered name or an importable class path.
"""

from __future__ import annotations

import importlib

from nag.errors import ConfigError
from nag.spaces.base import SearchSpace

_SPACES: dict[str, type[SearchSpace]] = {}


def register_space(cls: type[SearchSpace]) -> type[SearchSpace]:
    """Make ``cls`` rebuildable by its ``name`` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, SearchSpace) and cls.name):
        raise ConfigError(f"register_space({cls!r}): expected a SearchSpace subclass with a name")
    _SPACES[cls.name] = cls
    return cls


def build_space(config: dict) -> SearchSpace:
    """The space ``config`` (``{"name", "init_args"}``) describes."""
    name = config.get("name") if isinstance(config, dict) else None
    if name not in _SPACES:
        raise ConfigError(
            f"search space {name!r} is not registered (known: {', '.join(sorted(_SPACES))}); "
            "import the module that defines it and call nag.spaces.register_space, or pass space="
        )
    try:
        return _SPACES[name](**config.get("init_args", {}))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"search space {name!r} cannot be rebuilt from {config.get('init_args')}: {e}") from None


def resolve_space(space: str) -> SearchSpace:
    """A registered name (``nb201``, ...) or a class path such as ``chain_space.ChainSpace``
    (default constructor arguments)."""
    if space in _SPACES:
        return _SPACES[space]()
    module_name, _, class_name = space.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name) if module_name else None
    except ImportError:
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, SearchSpace)):
        raise ConfigError(
            f"--space {space!r}: unknown search space; use one of {', '.join(sorted(_SPACES))} "
            "or an importable class path such as mypkg.MySpace"
        )
    return cls()
