r"""The squeezing effect of a negative gradient on a linear softmax head, in closed form.

Model: :math:`z = W x` with a fixed feature :math:`x \in \mathbb{R}^d` and :math:`\pi = \text{softmax}(z)`.
The empirical kernel of this head is :math:`K = \|x\|^2 I` (the logits' Jacobian w.r.t. W is
:math:`I \otimes x^\top`), so one SGD step of size η on a loss with force :math:`G = \partial L/\partial z`
moves the logits by exactly :math:`\Delta z = -\eta\|x\|^2 G`.

*Negative gradient* on a response :math:`y^-` (gradient ascent on its NLL, i.e. descent on
:math:`L = \log\pi_{y^-}`): :math:`G = e_{y^-} - \pi`, so with :math:`c = \eta\|x\|^2`

.. math:: z'_i = z_i + c\,\pi_i \ (i \ne y^-),\qquad z'_{y^-} = z_{y^-} - c\,(1 - \pi_{y^-}),

hence :math:`\pi'_i \propto \pi_i\, e^{c\pi_i}` for every :math:`i \ne y^-` (and
:math:`\pi'_{y^-} \propto \pi_{y^-} e^{c(\pi_{y^-} - 1)}`), with one normaliser over all V entries.
Entries gain in proportion to their own probability: the mass removed from :math:`y^-` flows to the
already-likely tokens, and when :math:`y^-` sits in a valley of a peaky π nearly every entry except
the argmax LOSES probability — the squeezing effect (Ren & Sutherland, ICLR 2025, §3.3 and Appendix C).
The argmax of the other entries always gains (its factor :math:`e^{c\pi_i}` is the largest); how much
depends on c and on how peaky π is.

*Positive gradient* on :math:`y^+` (SFT, :math:`L = -\log\pi_{y^+}`): :math:`\pi'_i \propto \pi_i e^{-c\pi_i}`
for :math:`i \ne y^+` and :math:`\pi'_{y^+} \propto \pi_{y^+} e^{c(1 - \pi_{y^+})}`: every other entry
shrinks, the likely ones the most.

*Both at once* (the authors' case D: a negative step on a valley token :math:`y^-` and an equally large
positive step on another valley token :math:`y^+`, as an off-policy DPO pair on one context): the two
:math:`\pi` terms cancel, :math:`z' = z + c\,(e_{y^+} - e_{y^-})`, so nothing is squeezed: :math:`y^-` falls,
:math:`y^+` rises and the rest is only renormalised.

Set-up (differences from the authors' notebook ``squeeze_effect.ipynb``, which draws one example of each
case with V = 50, a 4-dimensional feature and steps of 0.3-1): here each seed draws a unit-norm feature
``x`` (``feature_dim`` = 16) and logits ``z`` with i.i.d. normal entries scaled by ``peaky_scale`` (3: the
largest π is about 0.35 at V = 50, the authors' peaky π has 0.76) or ``flat_scale`` (0.1), and ``W`` with
``W x = z`` exactly; the step is ``c = learning_rate · ‖x‖² = 2``. Tokens: the positive case updates the
entry ranked V/10, the peak case the third most likely entry (the authors: an entry inside the peak), the
flat case the median entry, the valley cases the entry ranked 0.9·V (and, for case D, 0.8·V for y⁺). Every
case and seed is checked against an actual optax SGD step in float64.

Sweep: the negative step on the valley token at V = 50 over the step size c and the peakiness (the scale of
the logits), averaged over the seeds: the gain of the argmax and the fraction of other entries that lose
mass, with the contours where the argmax gain reaches 0.01 and where half of the other entries lose.
Runs in seconds.

Submodules: :mod:`~ldjax._src.experiments.squeeze.config` (``Config``, ``FULL``, ``TINY``),
:mod:`~ldjax._src.experiments.squeeze.head` (the closed form, the real step, the cases and the sweep),
:mod:`~ldjax._src.experiments.squeeze.claims` (the rows) and :mod:`~ldjax._src.experiments.squeeze.figures`.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ldjax._src.experiments import common
from ldjax._src.experiments.squeeze.claims import fidelity
from ldjax._src.experiments.squeeze.config import CASES
from ldjax._src.experiments.squeeze.config import FULL
from ldjax._src.experiments.squeeze.config import TINY
from ldjax._src.experiments.squeeze.config import Config
from ldjax._src.experiments.squeeze.config import check_config
from ldjax._src.experiments.squeeze.figures import plot
from ldjax._src.experiments.squeeze.head import actual_step
from ldjax._src.experiments.squeeze.head import gain_onset
from ldjax._src.experiments.squeeze.head import run_cases
from ldjax._src.experiments.squeeze.head import squeezed_probs
from ldjax._src.experiments.squeeze.head import summarise
from ldjax._src.experiments.squeeze.head import sweep

__all__ = (
    "FULL",
    "TINY",
    "Config",
    "actual_step",
    "fidelity",
    "gain_onset",
    "main",
    "plot",
    "run",
    "squeezed_probs",
    "summarise",
)


def run(config: Config, *, data_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """The five cases for every seed and V (closed form checked against a real step) and the sweep."""
    del data_dir
    check_config(config)
    seeds = [config.seed + i for i in range(config.seeds)]
    per_seed, sweeps = [], []
    for seed in common.progress(seeds, desc="squeeze", enabled=progress):
        per_seed.append(run_cases(config, seed))
        sweeps.append(sweep(config, seed))
    mean_sweep = {key: np.mean([s[key] for s in sweeps], axis=0) for key in sweeps[0]}
    return {
        "dataset": "synthetic logits of a linear softmax head (no files)",
        "cases": list(CASES),
        "vocab_sizes": list(config.vocab_sizes),
        "seeds": seeds,
        "per_seed": per_seed,
        "sweep": {
            "vocab": config.sweep_vocab,
            "steps": list(config.sweep_steps),
            "scales": list(config.sweep_scales),
            **mean_sweep,
            "gain_onset": gain_onset(config.sweep_steps, mean_sweep["argmax_gain"]),
        },
    }


def main(argv=None) -> int:
    return common.main(sys.modules[__name__], argv)
