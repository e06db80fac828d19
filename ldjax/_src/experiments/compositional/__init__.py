r"""Simplicity bias towards compositional mappings, seen through the forces between examples (thesis ch. 7).

Ren & Sutherland ("Understanding simplicity bias towards compositional mappings via learning dynamics",
NeurIPS 2024 workshop on compositional learning; Ren's thesis, ch. 7) explain why a compositional mapping is
learned faster than a holistic one: an update on :math:`x_u` moves every other example by
:math:`-\eta\,A(x_o)\,K(x_o, x_u)\,G(x_u)`; under a compositional mapping the objects that share a factor with
:math:`x_u` (larger :math:`K`) also share that factor's part of the answer, so the update raises their correct
answers (the forces **cooperate**), while under a random bijection a shared factor says nothing about the
answer and the same push lowers them (the forces **contradict**). The same picture explains why clean labels
are learned before noisy ones.

The toy (:mod:`~ldjax._src.experiments.compositional.task`, the authors' two-factor set-up): objects
:math:`(g_1, g_2)`, 2 factors × ``values`` values, two-hot inputs, answers of two tokens over ``values``
symbols; an MLP (``hidden`` ReLU layers, width 128 as the authors') emits ``[2, values]`` logits, trained with
the cross-entropy of both tokens. The mappings (:data:`MAPS`), each a bijection of the ``values²`` objects onto
the ``values²`` answers: ``compositional`` :math:`(\sigma_1(g_1), \sigma_2(g_2))`; ``random``; and ``noisy``
(compositional with ``noise_fraction`` of the training objects mislabelled in both tokens).
``heldout_per_value`` objects per value of each factor are held out, so held-out accuracy measures
compositional generalisation. Per seed the three mappings are PAIRED: the same inputs, held-out split,
initialisation and minibatch order; all ``3 × seeds`` runs are copies of ONE compiled :func:`ldjax.train`
loop with plain SGD (each copy's loss has its own gradient, and SGD is element-wise).

Inside the loop, the ``accumulate`` hook decomposes every update
(:func:`~ldjax._src.experiments.compositional.forces.update_forces`: the first-order change of the training
labels' log π of the batch itself, of the OTHER training objects and of the held-out objects, split into the
clean and the noisy rows of the batch; and the actual change, for the checks). After training,
:func:`~ldjax._src.experiments.compositional.forces.influence_map` gives the pairwise picture at
initialisation.

The package: :mod:`~ldjax._src.experiments.compositional.task` (``Config``, ``FULL``, ``TINY``, the objects,
the mappings and the model), :mod:`~ldjax._src.experiments.compositional.forces` (the decomposition of an
update and the influence map), :mod:`~ldjax._src.experiments.compositional.phases` (the paired runs, the one
training loop, the influence at initialisation, the results) and
:mod:`~ldjax._src.experiments.compositional.report` (claims, checks and figures); :func:`run` here chains the
phases.
"""

from __future__ import annotations

import sys
from typing import Any

from ldjax._src.experiments import common
from ldjax._src.experiments.compositional import report
from ldjax._src.experiments.compositional.phases import collect
from ldjax._src.experiments.compositional.phases import influence_at_init
from ldjax._src.experiments.compositional.phases import make_runs
from ldjax._src.experiments.compositional.phases import train_copies
from ldjax._src.experiments.compositional.task import FULL
from ldjax._src.experiments.compositional.task import MAPS
from ldjax._src.experiments.compositional.task import TINY
from ldjax._src.experiments.compositional.task import Config

__all__ = ("FULL", "MAPS", "TINY", "Config", "fidelity", "main", "plot", "run")

fidelity = report.fidelity
plot = report.plot


def run(config: Config, *, data_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train every mapping of every seed as copies of one loop, decomposing every update; deterministic.

    Returns a dict (``M = 3`` maps, ``R = epochs + 1`` records, ``S`` seeds, ``C`` objects, ``n`` training
    objects): ``train_accuracy`` and ``heldout_accuracy`` ``[M, R, S]`` (both tokens right; held-out
    objects scored against the mapping's own label, the compositional one for ``noisy``);
    ``noisy_row_accuracy`` ``[2, R, S]`` (the noisy run's clean and mislabelled training objects);
    ``learned_epoch`` ``[M, S, C]`` (:func:`report.learned_epochs`; −1 for held-out objects); per-epoch sums
    over the updates of :func:`update_forces`: ``self``, ``others``, ``heldout`` ``[M, epochs, S, 2]`` and
    ``actual_self``, ``actual_others``, ``abs_error``, ``abs_actual``, ``abs_error_tenth`` ``[M, epochs, S]``;
    ``influence`` ``[M, S, 4]`` (:func:`relation_means` of the :func:`influence_map` at initialisation; for
    ``noisy`` over its clean updaters) and ``influence_noisy_updaters`` ``[S, 4]``; seed 0's maps of
    ``compositional`` and ``random`` between its training objects ``influence_map`` ``[2, n, n]`` (rounded to
    1e-6), ``influence_train_idx`` ``[n]`` and the ``factors`` ``[C, 2]``;
    ``train`` and ``noisy`` masks ``[S, C]``.
    """
    del data_dir  # synthetic, no files
    runs = make_runs(config)
    result = train_copies(config, runs, progress)
    return collect(config, runs, result, influence_at_init(config, runs))


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)
