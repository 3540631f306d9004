"""``nag export``: the written network runs without nag and computes what ``to_module`` builds."""

import ast
import os
import runpy
import subprocess
import sys

import pytest
import torch

from nag.cli import main
from nag.io.export import export
from nag.spaces import NB201Space

pytestmark = pytest.mark.usefixtures("single_thread")

ARCH = "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"
SMALL = {"N": 1, "C": 4}  # one cell per stage: the same code paths, a fraction of the tracing time

# Runs in a fresh interpreter where `import nag` fails, so only torch is there to load with.
WITHOUT_NAG = """
import runpy, sys
sys.modules["nag"] = None
import torch
program = torch.export.load(open(sys.argv[1], "rb")).module()
x = torch.load(sys.argv[3])
print(float((program(x) - torch.load(sys.argv[4])).abs().max()))
module = runpy.run_path(sys.argv[2])
net = module["Network"]()
print(sum(p.numel() for p in net.parameters()), tuple(net.eval()(x).shape))
"""


def reference(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return NB201Space().to_module(NB201Space().from_string(ARCH), **SMALL).eval()


def test_exported_files_load_and_run_without_nag(tmp_path):
    pt = export(ARCH, "nb201", str(tmp_path / "model.pt"), module_args=SMALL)
    py = export(ARCH, "nb201", str(tmp_path / "model.py"), module_args=SMALL)
    nodes = list(ast.walk(ast.parse(py.read_text())))
    imports = {a.name.split(".")[0] for n in nodes if isinstance(n, ast.Import) for a in n.names}
    imports |= {n.module.split(".")[0] for n in nodes if isinstance(n, ast.ImportFrom)}
    assert imports == {"torch"}
    net = reference()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.save(x, tmp_path / "x.pt")
        torch.save(net(x), tmp_path / "y.pt")
    # every torch.load inside, torch.export.load's own included, is forced weights-only
    env = {**os.environ, "TORCH_FORCE_WEIGHTS_ONLY_LOAD": "1"}
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_NAG, str(pt), str(py), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    max_diff, summary = out.stdout.splitlines()
    assert float(max_diff) < 1e-5  # the .pt program carries the seeded weights of to_module
    assert summary == f"{sum(p.numel() for p in net.parameters())} (3, 10)"


def test_source_file_runs_and_rebuilds_the_same_function(tmp_path, capsys):
    """Run as a script it reports itself; given the original weights, its outputs equal the original's."""
    py = export(ARCH, "nb201", str(tmp_path / "model.py"), module_args=SMALL)
    net = reference()
    rebuilt = runpy.run_path(str(py), run_name="__main__")["Network"]().eval()
    assert capsys.readouterr().out.startswith(f"{ARCH}: {sum(p.numel() for p in net.parameters())} parameters")
    originals = dict(net.named_parameters()) | dict(net.named_buffers())
    flat = {name.replace(".", "_"): value for name, value in originals.items()}
    rebuilt.load_state_dict({k: flat[k.replace(".", "_")] for k in rebuilt.state_dict()})
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), net(x))


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--arch", "|nor_conv_3x3~0|", "--space", "nb201"], "malformed architecture string"),
        (["--arch", ARCH, "--space", "nb999"], "--space 'nb999': unknown search space"),
        (
            ["--arch", ARCH, "--space", "nb201", "--module_args", '{"width": 3}'],
            "not arguments of NB201Space.to_module",
        ),
        (["--arch", ARCH, "--space", "nb201", "--input_shape", "[1,32,32]"], "the network does not accept it"),
    ],
)
def test_bad_input_fails_in_one_line_and_writes_nothing(args, fragment, tmp_path, capsys):
    for output in ("model.py", "model.onnx"):
        with pytest.raises(SystemExit) as exit_info:
            main(["export", *args, "--output", str(tmp_path / output)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        expected = "expected a .py (source) or .pt/.pt2" if output.endswith(".onnx") else fragment
        assert err.startswith("error: ") and expected in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_a_program_is_traced_at_the_architectures_own_input(tmp_path):
    """OFA-MobileNetV3 subnets carry their resolution: with no input_shape, the .pt2 program is
    traced at it (its input spec is [batch, 3, 160, 160] for an r=160 subnet)."""
    from nag.spaces.mbv3 import MBV3Space, MBV3Subnet

    space = MBV3Space()
    arch = space.to_string(MBV3Subnet((((3, 3), (3, 3)),) * 5, 160))
    program = torch.export.load(str(export(arch, "ofa_mbv3", str(tmp_path / "m.pt2"), module_args={"num_classes": 10})))
    (user_input,) = program.graph_signature.user_inputs
    (node,) = [n for n in program.graph.nodes if n.op == "placeholder" and n.name == user_input]
    assert tuple(node.meta["val"].shape[1:]) == (3, 160, 160)
    with torch.no_grad():
        assert program.module()(torch.randn(2, 3, 160, 160)).shape == (2, 10)
