import pytest
import torch

from nag.diffusion import VESDE, VPSDE, ode_sample, pc_sample
from nag.diffusion.samplers import dpm_solver_sample, edm_sample, karras_sigmas

MU = torch.tensor([1.0, -0.5])
S = 0.5


def gaussian_score(sde, mu=MU, s=S):
    """Exact score of N(mu, s^2) pushed through the SDE: N(a mu, a^2 s^2 + std^2) at time t."""

    def score_fn(state, t):
        out = {}
        for k, x in state.items():
            a, std = sde.marginal_prob(torch.ones(x.shape[0], *[1] * (x.dim() - 1)), t)
            var = a**2 * s**2 + std**2
            out[k] = -(x - a * mu) / var
        return out

    return score_fn


def seeded(seed):
    return torch.Generator().manual_seed(seed)


SAMPLERS = {
    "pc": lambda sde, score, shapes, **kw: pc_sample(sde, score, shapes, num_steps=kw.pop("num_steps", 400), **kw),
    "ode": lambda sde, score, shapes, **kw: ode_sample(sde, score, shapes, num_steps=kw.pop("num_steps", 50), **kw),
    "dpm": lambda sde, score, shapes, **kw: dpm_solver_sample(
        sde, score, shapes, num_steps=kw.pop("num_steps", 20), **kw
    ),
    "edm": lambda sde, score, shapes, **kw: edm_sample(sde, score, shapes, num_steps=kw.pop("num_steps", 20), **kw),
}


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("sde", [VESDE(), VPSDE()], ids=["ve", "vp"])
def test_recovers_gaussian_target(sampler, sde):
    out = SAMPLERS[sampler](sde, gaussian_score(sde), {"x": (4000, 2)}, generator=seeded(0))
    x = out["x"]
    assert x.dtype == torch.float32
    torch.testing.assert_close(x.mean(0), MU, atol=0.1, rtol=0)
    torch.testing.assert_close(x.std(0), torch.full((2,), S), atol=0.1, rtol=0)


def test_langevin_corrector_fixes_a_coarse_predictor():
    sde = VESDE()
    shapes, score = {"x": (4000, 2)}, gaussian_score(sde)
    predictor_only = pc_sample(sde, score, shapes, num_steps=10, n_corrector=0, generator=seeded(0))["x"]
    corrected = pc_sample(sde, score, shapes, num_steps=10, n_corrector=10, snr=0.5, generator=seeded(0))["x"]
    assert (predictor_only.std(0) - S).abs().min() > 0.5
    torch.testing.assert_close(corrected.mean(0), MU, atol=0.1, rtol=0)
    torch.testing.assert_close(corrected.std(0), torch.full((2,), S), atol=0.1, rtol=0)


def test_ode_euler_is_worse_than_heun_for_few_steps():
    sde = VESDE()
    shapes, score = {"x": (4000, 2)}, gaussian_score(sde)
    heun = ode_sample(sde, score, shapes, num_steps=20, method="heun", generator=seeded(0))["x"]
    euler = ode_sample(sde, score, shapes, num_steps=20, method="euler", generator=seeded(0))["x"]
    assert (heun.std(0) - S).abs().max() < (euler.std(0) - S).abs().max()


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_shapes_and_seeds(sampler):
    sde = VPSDE()
    shapes = {"x": (5, 4, 3), "adj": (5, 4, 4)}
    a, b, c = (
        SAMPLERS[sampler](sde, gaussian_score(sde, mu=0.0), shapes, num_steps=5, generator=seeded(seed))
        for seed in (0, 0, 1)
    )
    assert {k: tuple(v.shape) for k, v in a.items()} == shapes
    assert all(torch.equal(a[k], b[k]) for k in shapes)
    assert all(not torch.equal(a[k], c[k]) for k in shapes)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_mask_keeps_entries_exactly_zero(sampler):
    sde = VESDE()
    b, n, v = 6, 5, 3
    node_mask = torch.tensor([1.0, 1, 1, 0, 0])[:, None]  # two padding nodes
    upper = torch.triu(torch.ones(n, n), diagonal=1)
    mask = {"x": node_mask, "adj": upper}
    score = gaussian_score(sde, mu=1.0)
    seen_nonzero = []

    def score_fn(state, t):
        seen_nonzero.append(bool(state["x"][:, 3:].any() or state["adj"][:, upper == 0].any()))
        return score(state, t)

    out = SAMPLERS[sampler](
        sde, score_fn, {"x": (b, n, v), "adj": (b, n, n)}, num_steps=20, generator=seeded(0), mask=mask
    )
    assert seen_nonzero and not any(seen_nonzero)
    assert torch.all(out["x"][:, 3:] == 0) and torch.all(out["x"][:, :3] != 0)
    assert torch.all(out["adj"][:, upper == 0] == 0) and torch.all(out["adj"][:, upper == 1] != 0)


def test_mask_for_one_key_leaves_others_free():
    sde = VPSDE()
    mask = {"adj": torch.zeros(3, 3)}
    out = pc_sample(
        sde,
        gaussian_score(sde, mu=0.0),
        {"x": (2, 3, 2), "adj": (2, 3, 3)},
        num_steps=3,
        generator=seeded(0),
        mask=mask,
    )
    assert torch.all(out["adj"] == 0) and torch.all(out["x"] != 0)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_two_key_state_gets_per_key_scores_and_shared_time(sampler):
    sde = VESDE()
    calls = []
    targets = {"x": -1.0, "adj": 2.0}

    def score_fn(state, t):
        calls.append((set(state), t.shape))
        return {k: gaussian_score(sde, mu=targets[k], s=0.3)({k: x}, t)[k] for k, x in state.items()}

    out = SAMPLERS[sampler](sde, score_fn, {"x": (2000, 2, 2), "adj": (2000, 2, 2)}, num_steps=50, generator=seeded(0))
    assert all(keys == {"x", "adj"} and shape == (2000,) for keys, shape in calls)
    for k, mu in targets.items():
        assert out[k].mean().item() == pytest.approx(mu, abs=0.1)
        assert out[k].std().item() == pytest.approx(0.3, abs=0.1)


@pytest.mark.parametrize("sde", [VESDE(), VPSDE()], ids=["ve", "vp"])
def test_single_step_goes_from_prior_at_T_to_eps_without_final_noise(sde):
    shapes, score = {"x": (8, 2)}, gaussian_score(sde)
    x_T = sde.prior_sampling((8, 2), generator=seeded(0))
    t_T = torch.full((8,), sde.T)
    score_T = score({"x": x_T}, t_T)["x"]
    dt = sde.eps - sde.T
    pc = pc_sample(sde, score, shapes, num_steps=1, n_corrector=0, generator=seeded(0))["x"]
    ode = ode_sample(sde, score, shapes, num_steps=1, method="euler", generator=seeded(0))["x"]
    torch.testing.assert_close(pc, x_T + sde.reverse_drift(x_T, t_T, score_T) * dt)
    torch.testing.assert_close(ode, x_T + sde.reverse_drift(x_T, t_T, score_T, probability_flow=True) * dt)


def test_score_fn_missing_a_key_is_reported():
    sde = VESDE()
    with pytest.raises(ValueError, match="adj"):
        pc_sample(sde, lambda state, t: {"x": torch.zeros_like(state["x"])}, {"x": (2, 3), "adj": (2, 3)}, num_steps=2)


def test_mismatched_batch_sizes_are_rejected():
    with pytest.raises(ValueError, match="batch size"):
        ode_sample(VESDE(), gaussian_score(VESDE()), {"x": (2, 3), "adj": (4, 3)}, num_steps=2)


def test_bf16_score_keeps_state_fp32():
    sde = VPSDE()
    base = gaussian_score(sde, mu=0.0)

    def score_fn(state, t):
        return {k: v.bfloat16() for k, v in base(state, t).items()}

    out = ode_sample(sde, score_fn, {"x": (3, 2)}, num_steps=3, generator=seeded(0))
    assert out["x"].dtype == torch.float32


def test_progress_bar(capsys):
    sde = VESDE()
    pc_sample(sde, gaussian_score(sde), {"x": (2, 2)}, num_steps=3, progress=True)
    assert "pc sampling" in capsys.readouterr().err


# --- few-step solvers ---------------------------------------------------------------------------
def counting(score_fn):
    calls = []

    def wrapped(state, t):
        calls.append(float(t[0]))
        return score_fn(state, t)

    return wrapped, calls


@pytest.mark.parametrize("sde", [VESDE(), VPSDE()], ids=["ve", "vp"])
def test_dpm_solver_on_a_log_snr_grid_recovers_a_gaussian_in_ten_evaluations(sde):
    score, calls = counting(gaussian_score(sde))
    x = dpm_solver_sample(
        sde, score, {"x": (4000, 2)}, num_steps=10, grid="logsnr", t_end=1e-3, denoise=False, generator=seeded(0)
    )["x"]
    assert len(calls) == 10
    torch.testing.assert_close(x.mean(0), MU, atol=0.05, rtol=0)
    torch.testing.assert_close(x.std(0), torch.full((2,), S), atol=0.05, rtol=0)


@pytest.mark.parametrize("grid", ["time", "logsnr", "quadratic"])
@pytest.mark.parametrize("denoise", [True, False])
def test_dpm_solver_makes_one_evaluation_per_step_from_T_down(grid, denoise):
    sde = VPSDE()
    score, calls = counting(gaussian_score(sde))
    dpm_solver_sample(sde, score, {"x": (3, 2)}, num_steps=6, grid=grid, t_end=0.02, denoise=denoise)
    assert len(calls) == 6
    assert calls[0] == pytest.approx(sde.T) and calls == sorted(calls, reverse=True)
    assert (calls[-1] == pytest.approx(0.02)) == denoise


def test_dpm_solver_denoise_returns_the_data_prediction():
    """A point mass at MU (exact score): the data prediction at any t is MU itself."""
    sde = VPSDE()
    x = dpm_solver_sample(sde, gaussian_score(sde, s=1e-4), {"x": (50, 2)}, num_steps=3, generator=seeded(0))["x"]
    torch.testing.assert_close(x, MU.expand(50, 2), atol=1e-3, rtol=0)


def test_dpm_solver_rejects_a_bad_grid_or_end_time():
    sde = VPSDE()
    with pytest.raises(ValueError, match="grid"):
        dpm_solver_sample(sde, gaussian_score(sde), {"x": (2, 2)}, num_steps=2, grid="cosine")
    with pytest.raises(ValueError, match="t_end"):
        dpm_solver_sample(sde, gaussian_score(sde), {"x": (2, 2)}, num_steps=2, t_end=1.0)


@pytest.mark.parametrize("sde", [VESDE(), VPSDE()], ids=["ve", "vp"])
def test_edm_heun_makes_two_evaluations_per_level_but_the_last(sde):
    score, calls = counting(gaussian_score(sde))
    edm_sample(sde, score, {"x": (3, 2)}, num_steps=5, generator=seeded(0))
    assert len(calls) == 2 * 5 - 1
    lowest = float(sde.t_from_sigma(torch.tensor(0.05, dtype=torch.float64)))
    assert calls[0] == pytest.approx(sde.T) and calls[-1] == pytest.approx(lowest)
    score, calls = counting(gaussian_score(sde))
    edm_sample(sde, score, {"x": (3, 2)}, num_steps=2, sigma_min=None, generator=seeded(0))
    assert len(calls) == 3 and calls[-1] == pytest.approx(sde.eps, abs=1e-7)


def test_karras_sigmas_run_from_max_to_min_denser_near_min():
    sigmas = karras_sigmas(0.01, 50.0, 6)
    assert sigmas[0].item() == pytest.approx(50.0) and sigmas[-1].item() == pytest.approx(0.01)
    steps = -sigmas.diff()
    assert torch.all(steps > 0) and torch.all(steps[1:] < steps[:-1])


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_init_replaces_the_prior_draw(sampler):
    sde = VPSDE()
    shapes = {"x": (4, 2)}
    init = {"x": sde.prior_sampling((4, 2), generator=seeded(7))}
    kw = {"num_steps": 3}
    if sampler == "pc":
        kw["n_corrector"] = 0
    a = SAMPLERS[sampler](sde, gaussian_score(sde), shapes, generator=seeded(0), init=init, **kw)
    b = SAMPLERS[sampler](sde, gaussian_score(sde), shapes, generator=seeded(7), **kw)
    if sampler == "pc":  # its predictor noise still comes from the generator: only the start is shared
        assert not torch.equal(a["x"], b["x"])
    else:
        torch.testing.assert_close(a["x"], b["x"])
    with pytest.raises(ValueError, match="init"):
        SAMPLERS[sampler](sde, gaussian_score(sde), shapes, init={"x": torch.zeros(5, 2)}, **kw)
