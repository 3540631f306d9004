"""One Generator interface: every shipped generator config round-trips through
``nag.load_generator(ckpt).sample(...)`` with its search space rebuilt from the checkpoint alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import nag
from nag.cli import main
from nag.errors import ConfigError
from nag.generation import GeneratedSet, Generator, ModelGenerator
from nag.generation.baseline import UniformRandom
from nag.spaces import NBGraphSpace, build_space

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
TINY = [
    "--trainer.max_steps=2",
    "--trainer.limit_val_batches=1",
    "--trainer.enable_progress_bar=false",
    "--test_after_fit=false",
    "--generate_after_fit=0",
    "--trainer.callbacks=[]",
]
CONFIGS = {  # shipped generator configs and the data file each needs (None: embedded)
    "quickstart.yaml": None,
    "nbgraph/diffusion.yaml": None,
    "nbgraph/discrete_diffusion.yaml": None,
    "nb201/diffusion.yaml": DATA / "nb201" / "nb201.csv",
    "nb201/discrete_diffusion.yaml": DATA / "nb201" / "nb201.csv",
    "nb101/diffusion.yaml": DATA / "nb101" / "nb101_1k.json",
    "nb101/discrete_diffusion.yaml": DATA / "nb101" / "nb101_1k.json",
    "hierarchical/cell_diffusion.yaml": None,
    "hierarchical/cell_discrete_diffusion.yaml": None,
}


def fit(config: str, tmp_path: Path, *extra: str) -> Path:
    main(["fit", "--config", str(ROOT / "configs" / config), *TINY, f"--trainer.default_root_dir={tmp_path}", *extra])
    return next(tmp_path.rglob("last.ckpt"))


@pytest.mark.parametrize("config", list(CONFIGS))
def test_shipped_config_round_trips_through_load_generator(config, tmp_path):
    if CONFIGS[config] is not None and not CONFIGS[config].is_file():
        pytest.skip(f"{CONFIGS[config]} not found (../shared/data is absent)")
    generator = nag.load_generator(fit(config, tmp_path))  # no config, no space: the file alone
    assert isinstance(generator, Generator)
    result = generator.sample(6, seed=1, steps=2)
    again = generator.sample(6, seed=1, steps=2)
    assert isinstance(result, GeneratedSet) and len(result) == 6
    assert all(a is not None for a in result.archs), result.errors  # projected onto the space
    assert all(generator.space.is_valid(a) for a in result.archs)
    assert 0.0 <= result.raw_validity <= 1.0 and result.graphs is not None
    assert [generator.space.key(a) for a in result.archs] == [generator.space.key(a) for a in again.archs]


def test_space_is_rebuilt_with_its_constructor_arguments(tmp_path):
    ckpt = fit(
        "nbgraph/diffusion.yaml",
        tmp_path,
        "--data.init_args.benchmark.init_args.dataset=proteins",
        "--data.init_args.benchmark.init_args.space=nag.spaces.NBGraphSpace",
        '--data.init_args.benchmark.init_args.space.ops=["gcn", "gat", "sage", "gin", "skip"]',
    )
    generator = nag.load_generator(ckpt)
    assert set(generator.space.layer_ops) == {"gcn", "gat", "sage", "gin", "skip"}
    with pytest.raises(ConfigError, match="trained on search space"):
        nag.load_generator(ckpt, space=NBGraphSpace())  # the identity check stays


def test_only_registered_spaces_are_built():
    with pytest.raises(ConfigError, match="not registered"):
        build_space({"name": "os.system", "init_args": {"command": "touch pwned"}})
    assert set(build_space(NBGraphSpace(["gcn", "skip"]).build_config).layer_ops) == {"gcn", "skip"}


def test_requests_a_generator_cannot_serve_fail_in_one_line(tmp_path):
    generator = nag.load_generator(fit("nbgraph/diffusion.yaml", tmp_path))
    assert generator.supports_guidance and generator.condition_names == []
    with pytest.raises(ConfigError, match="conditions"):
        generator.sample(2, conditions={"valid_acc": 0.8})
    with pytest.raises(ConfigError, match="not a generator"):
        ModelGenerator(torch.nn.Linear(2, 2), generator.space)
    with pytest.raises(ConfigError, match="holds no generator"):
        nag.load_generator(fit("quickstart_predictor.yaml", tmp_path / "predictor"))
    with pytest.raises(ConfigError, match="--pc_snr=0.5: it sets the pc sampler's corrector, not ode's"):
        generator.with_settings(pc_snr=0.5).sample(2, steps=2)  # the checkpoint samples with the ODE
    assert len(generator.with_settings(sampler="pc", pc_snr=0.5).sample(2, steps=2)) == 2
    discrete = nag.load_generator(fit("nbgraph/discrete_diffusion.yaml", tmp_path / "discrete"))
    with pytest.raises(ConfigError, match="--pc_snr: DiscreteDiffusionModule has no PC sampler"):
        discrete.with_settings(pc_snr=0.5).sample(2, steps=2)


def test_uniform_random_is_a_generator():
    baseline = UniformRandom(NBGraphSpace())
    assert isinstance(baseline, Generator)
    result = baseline.sample(5, seed=0)
    assert result.validity == 1.0 and result.raw_validity == 1.0
    assert result.archs == baseline.sample(5, seed=0).archs


def test_generate_guide_needs_a_noise_aware_predictor(tmp_path, capsys):
    ckpt = fit("nbgraph/diffusion.yaml", tmp_path / "gen")
    args = [
        "generate",
        "--config",
        str(ROOT / "configs" / "nbgraph" / "diffusion.yaml"),
        "--ckpt_path",
        str(ckpt),
        "--num_samples",
        "4",
        "--steps",
        "2",
        "--output",
        str(tmp_path / "out.csv"),
        "--guide",
        '["max valid_acc"]',
    ]
    with pytest.raises(SystemExit):
        main(args)
    assert "--guide needs --predictor_ckpt" in capsys.readouterr().err
    predictor = fit("quickstart_predictor.yaml", tmp_path / "clean")
    with pytest.raises(SystemExit):
        main([*args, "--predictor_ckpt", str(predictor)])
    assert "noise_aware" in capsys.readouterr().err
    aware = fit(
        "quickstart_predictor.yaml",
        tmp_path / "aware",
        "--model.init_args.noise_aware=true",
        "--data.init_args.targets=[valid_acc, latency]",
    )
    main([*args[:-2], "--guide", '["max valid_acc", "latency<=0.004"]', "--predictor_ckpt", str(aware)])
    assert (tmp_path / "out.csv").read_text().count("\n") == 5
