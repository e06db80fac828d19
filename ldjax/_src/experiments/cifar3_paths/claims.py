"""The reproduction rows of :mod:`ldjax._src.experiments.cifar3_paths`: the zig-zag claims of the learning-path
experiments (:func:`~ldjax._src.experiments.learning_paths.path_claims`) and the pull claim."""

from __future__ import annotations

from typing import Any

import numpy as np

from ldjax._src.experiments import claims
from ldjax._src.experiments import learning_paths as lp


def pull_claim(fractions: np.ndarray, num_observed: int, num_pull: int) -> claims.Row:
    """``cifar3.pulls_from_p_star_class`` from per-seed mean fractions ``[S]``."""
    return claims.claim(
        "cifar3.pulls_from_p_star_class",
        "what pulls a mislabelled example towards p* are examples labelled with p*'s top class",
        source=f"{lp.SOURCE}, Section 4 (the zig-zag comes from the pull of similar examples)",
        paper="explained by the NTK pull of similar examples (toy analysis, no CIFAR number)",
        values=fractions,
        criterion=claims.Above(
            0.5,
            f"fraction of the top {num_pull} pullers towards p* labelled with p*'s "
            f"argmax, mean over {num_observed} flipped examples (chance ≈ 1/3)",
        ),
        note="A·K·G force of one example in a minibatch, plain-SGD part, at each example's turning point",
    )


def fidelity(results: dict[str, Any]) -> list[claims.Row]:
    """The zig-zag claims of the flipped examples against the clean ones, then the pull claim (where any
    example was observed)."""
    per_seed = results["per_seed"]
    rows = lp.path_claims(
        "cifar3",
        "flipped",
        "clean",
        *(np.asarray(per_seed[key]) for key in ("zigzag_flipped", "zigzag_clean", "early_stop_gain_flipped")),
        margin=results["zigzag_margin"],
        section="Section 3 (noisy CIFAR-10 paths)",
        what="mislabelled examples",
    )
    pulls = results["pulls"]
    if pulls and pulls[0]:
        rows.append(
            pull_claim(
                np.asarray(per_seed["pull_label_is_p_star_argmax"]),
                len(pulls[0]),
                len(pulls[0][0]["top_pull"]),
            )
        )
    return rows
