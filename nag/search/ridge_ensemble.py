"""Bootstrap ridge regressions on the op one-hot features: a BO surrogate that fits in milliseconds.

On a fixed-topology space (OFA-MobileNetV3: one op per slot, and the resolution) an
architecture's accuracy is close to additive in its slot choices, so a linear model of the
flattened node one-hots ranks as well as a graph network on 100 points, and refits every round
at no cost. Resampling the queried points per member gives the spread UCB needs. The model is
linear in the node features, so it also scores the continuous noisy states of score diffusion
(``predict_state``), where its gradient steers sampling.
"""

from __future__ import annotations

import numpy as np
import torch

from nag.diffusion.graph_state import encoder_inputs


class RidgeEnsemble:
    """``members`` ridge regressions, each on a bootstrap resample of ``(x, y)``.

    Args:
        x: ``[n, nodes, ops]`` encoded architectures (one-hot node ops).
        mask: ``[n, nodes]`` real nodes (padding contributes nothing).
        y: ``[n]`` targets (normalised: larger is better).
        members: ensemble size.
        alpha: ridge penalty (on standardised targets and one-hot features, 1 is mild).
        seed: fixes the resamples.
    """

    def __init__(
        self, x: torch.Tensor, mask: torch.Tensor, y: np.ndarray, members: int = 5, alpha: float = 1.0, seed: int = 0
    ) -> None:
        features = self.features(x, mask).double().numpy()
        rng = np.random.default_rng(seed)
        weights, biases = [], []
        for _ in range(members):
            pick = rng.integers(len(y), size=len(y))
            f, t = features[pick], y[pick]
            mean_f, mean_t = f.mean(0), t.mean()
            fc = f - mean_f
            w = np.linalg.solve(fc.T @ fc + alpha * np.eye(fc.shape[1]), fc.T @ (t - mean_t))
            weights.append(w)
            biases.append(mean_t - mean_f @ w)
        self.weights = torch.tensor(np.stack(weights), dtype=torch.float32)  # [E, F]
        self.biases = torch.tensor(biases, dtype=torch.float32)  # [E]

    @staticmethod
    def features(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, nodes * ops]``: the node one-hots, zero on padding."""
        return (x * mask.unsqueeze(-1)).flatten(1).float()

    def predict_graphs(self, x: torch.Tensor, adj: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
        """``[E, B]`` member predictions of clean encoded architectures."""
        return self.weights.to(x.device) @ self.features(x, mask).T + self.biases.to(x.device).unsqueeze(-1)

    def predict_state(self, state: dict[str, torch.Tensor], t: torch.Tensor) -> torch.Tensor:
        """``[E, B]`` member predictions of a noisy signed diffusion state (linear in it, so its
        gradient reaches every entry); the fixed topology needs no adjacency."""
        x, _, mask = encoder_inputs(state, torch.zeros(1, 1, 1))
        return self.predict_graphs(x, None, mask)
