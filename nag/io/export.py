"""``nag export``: one architecture as a runnable PyTorch network that loads without nag.

* ``.py``: a standalone source file (imports only torch) that rebuilds the network, freshly
  initialised; ``python model.py`` runs one forward pass. The network is traced with
  ``torch.fx`` and every ``torch.nn`` layer is written as its constructor call, so the file
  works for any space's :meth:`~nag.spaces.base.SearchSpace.to_module`. Before it is written
  the file is executed, given the original's weights and checked to compute the same outputs.
* ``.pt`` / ``.pt2``: a ``torch.export`` program with the (seeded, untrained) weights; load it
  with ``torch.export.load(open(path, "rb")).module()`` (torch accepts a bare path only for
  ``.pt2`` names). Chosen over ``torch.save(module)``, which pickles
  nag's classes (so loading needs nag, and ``weights_only=False``), and over TorchScript,
  which torch 2.x deprecates. The program is an inference graph (eval mode, batch size free).
"""

from __future__ import annotations

import ast
import inspect
import keyword
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from nag.errors import ConfigError, NagError
from nag.io.atomic import atomic_write
from nag.spaces.base import SearchSpace
from nag.spaces.registry import resolve_space

SUFFIXES = (".py", ".pt", ".pt2")


def input_shape_of(space: SearchSpace, input_shape: Sequence[int] | None = None, arch: Any = None) -> tuple[int, ...]:
    """``input_shape`` if given, else the space's own (:meth:`SearchSpace.input_shape_for` of
    ``arch`` where one is given); a space without one must be given one."""
    shape = input_shape or (space.input_shape if arch is None else space.input_shape_for(arch))
    if not shape:
        raise ConfigError(
            f"--input_shape: space {space.name!r} has no default input shape; pass one input without the batch "
            "dimension, e.g. --input_shape '[3,32,32]'"
        )
    if any(int(d) < 1 for d in shape):
        raise ConfigError(f"--input_shape {list(shape)}: every dimension must be a positive integer")
    return tuple(int(d) for d in shape)


def export(
    arch: str,
    space: str = "nb201",
    output: str = "model.py",
    input_shape: Sequence[int] | None = None,
    module_args: dict[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """Write the network of ``arch`` (the space's string form) to ``output``.

    Args:
        arch: architecture string, e.g.
            ``'|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|avg_pool_3x3~2|'``.
        space: short space name (``nb201``, ...) or a ``SearchSpace`` class path.
        output: ``.py`` (standalone source) or ``.pt``/``.pt2`` (``torch.export`` program).
        input_shape: one input without the batch dimension, used to trace and check (default: the
            space's own ``input_shape``).
        module_args: keyword arguments of the space's ``to_module``, e.g. ``{"num_classes": 100}``.
        seed: seeds the weights of the ``.pt`` program and the check of the ``.py`` file.
    """
    path = Path(output)
    if path.suffix not in SUFFIXES:
        raise ConfigError(f"--output {output!r}: expected a .py (source) or .pt/.pt2 (torch.export program) file name")
    search_space = resolve_space(space)
    parsed = search_space.from_string(arch)
    torch.manual_seed(seed)
    try:
        module = search_space.to_module(parsed, **(module_args or {}))
    except TypeError as e:
        raise ConfigError(
            f"--module_args {module_args}: not arguments of {type(search_space).__name__}.to_module ({e})"
        ) from None
    module.eval()
    input_shape = input_shape_of(search_space, input_shape, parsed)
    example = torch.randn(2, *input_shape)
    try:
        with torch.no_grad():
            expected = module(example)
    except RuntimeError as e:
        raise ConfigError(
            f"--input_shape {list(input_shape)}: the network does not accept it ({str(e).splitlines()[0]})"
        ) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".py":
        source = standalone_source(
            module,
            example,
            expected,
            arch=search_space.to_string(parsed),
            space=type(search_space).__name__,
            input_shape=tuple(input_shape),
        )
        with atomic_write(path) as f:  # a failed export leaves nothing behind
            f.write(source)
    else:
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        with atomic_write(path, "wb") as f:  # a file object: torch warns about names not ending in .pt2
            torch.export.save(program, f)
    return path


# --- the standalone source ---------------------------------------------------------------
_TEMPLATE = '''"""{space} architecture {arch}

Written by `nag export`; needs only PyTorch. The weights are freshly initialised:
build it with `Network()` and train it; run this file for one forward pass.
"""

{imports}

ARCH = {arch!r}
INPUT_SHAPE = {input_shape!r}


class Network(nn.Module):
    def __init__(self) -> None:
        super().__init__()
{layers}
{forward}

if __name__ == "__main__":
    net = Network().eval()
    with torch.no_grad():
        out = net(torch.randn(2, *INPUT_SHAPE))
    print(f"{{ARCH}}: {{sum(p.numel() for p in net.parameters())}} parameters, output {{tuple(out.shape)}}")
'''


def standalone_source(
    module: nn.Module,
    example: torch.Tensor,
    expected: torch.Tensor,
    arch: str,
    space: str,
    input_shape: tuple[int, ...],
) -> str:
    """Source of a ``Network`` class computing what ``module`` computes, checked on ``example``."""
    try:
        traced = fx.symbolic_trace(module)
    except Exception as e:
        raise NagError(
            f"cannot write {type(module).__name__} as source ({type(e).__name__}: {e}); export to .pt instead"
        ) from None
    graph = traced.graph
    flat_names: dict[str, str] = {}
    for node in graph.nodes:
        if node.op == "get_attr":
            raise NagError(
                f"cannot write {type(module).__name__} as source: it reads tensor {node.target!r} "
                "outside a torch.nn layer; export to .pt instead"
            )
        if node.op == "call_module":
            node.target = flat_names.setdefault(node.target, _identifier(node.target, set(flat_names.values())))
        node.type = None  # no annotations: they would need fx's private names
    code = graph.python_code(root_module="self")
    layers = "\n".join(
        f"        self.{flat} = {_constructor(traced.get_submodule(qual))}" for qual, flat in flat_names.items()
    )
    forward = "\n".join(f"    {line}" if line.strip() else "" for line in code.src.strip("\n").splitlines())
    source = _TEMPLATE.format(
        space=space,
        arch=arch,
        input_shape=input_shape,
        layers=layers or "        pass",
        forward=forward,
        imports=_imports(code.src, code.globals),
    )
    _check(source, module, flat_names, example, expected)
    return source


def _identifier(qualified: str, taken: set[str]) -> str:
    name = re.sub(r"\W", "_", qualified)
    name = f"m_{name}" if name[0].isdigit() or keyword.iskeyword(name) else name
    while name in taken:
        name += "_"
    return name


def _constructor(layer: nn.Module) -> str:
    """``nn.<Layer>(arg=value, ...)`` from the constructor's signature and the layer's attributes
    (a tensor attribute such as ``bias`` means the flag was on)."""
    cls = type(layer)
    if getattr(nn, cls.__name__, None) is not cls:
        raise NagError(f"cannot write layer {cls.__qualname__} as source (not a torch.nn layer); export to .pt instead")
    args = []
    for name, param in list(inspect.signature(cls.__init__).parameters.items())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or name in ("device", "dtype"):
            continue
        if not hasattr(layer, name):
            if param.default is param.empty:
                raise NagError(
                    f"cannot write {cls.__name__} as source: no attribute for its argument {name!r}; "
                    "export to .pt instead"
                )
            continue
        value = getattr(layer, name)
        if isinstance(value, torch.Tensor) or (value is None and param.default is True):
            value = value is not None
        if param.default is not param.empty and type(value) is type(param.default) and value == param.default:
            continue
        try:
            ast.literal_eval(repr(value))
        except (ValueError, SyntaxError):
            raise NagError(f"cannot write {cls.__name__}({name}={value!r}) as source; export to .pt instead") from None
        args.append(f"{name}={value!r}")
    return f"nn.{cls.__name__}({', '.join(args)})"


def _imports(src: str, names: dict[str, Any]) -> str:
    """Import lines for the globals fx's generated ``forward`` uses."""
    lines = ["import torch", "from torch import nn"]
    for name, value in names.items():
        if name in ("torch", "nn") or not re.search(rf"\b{re.escape(name)}\b", src):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            lines.append(f"{name} = float({str(value)!r})")
        elif inspect.ismodule(value) and value.__name__.split(".")[0] in ("torch", "math", "operator"):
            lines.append(f"import {value.__name__} as {name}")
        elif getattr(value, "__module__", "").split(".")[0] in ("torch", "math", "operator", "_operator"):
            lines.append(f"from {value.__module__} import {value.__qualname__} as {name}")
        else:
            raise NagError(
                f"cannot write the traced forward as source: it uses {name!r} ({value!r}); export to .pt instead"
            )
    return "\n".join(lines)


def _check(
    source: str, module: nn.Module, flat_names: dict[str, str], example: torch.Tensor, expected: torch.Tensor
) -> None:
    """Run the written source with ``module``'s weights: it must compute the same outputs."""
    namespace: dict[str, Any] = {"__name__": "nag_export_check"}
    exec(compile(source, "<nag export>", "exec"), namespace)
    rebuilt = namespace["Network"]().eval()
    state = {
        f"{flat}.{key}": value
        for qual, flat in flat_names.items()
        for key, value in module.get_submodule(qual).state_dict().items()
    }
    rebuilt.load_state_dict(state, strict=True)
    with torch.no_grad():
        got = rebuilt(example)
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
        raise NagError(
            f"the source written for {type(module).__name__} computes different outputs "
            f"(max difference {float((got - expected).abs().max()):.3g}); export to .pt instead"
        )
