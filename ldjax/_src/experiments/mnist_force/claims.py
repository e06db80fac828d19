"""The reproduction rows of :mod:`ldjax._src.experiments.mnist_force`: the statistics (pure functions of a force
map or of the mean prediction per class, so tests can feed them counter-examples) and :func:`fidelity`."""

from typing import Any

import numpy as np
from jaxtyping import Float

from ldjax._src.experiments import claims

SOURCE = "Ren & Sutherland, ICLR 2025, §2 and Figure 1 (LeNet on MNIST)"


def pull_lead(force_map: Float[np.ndarray, "10 10"], updating: int = 4, pulled: int = 9) -> float:
    """How far ``pulled`` leads the other classes in the pull of learning ``updating``.

    ``(F[u, p] − max_{c ∉ {u, p}} F[u, c]) / mean_c |F[u, c]|`` for the force map ``F`` (rows: updating
    class, columns: observing class; :func:`force_maps`' ``towards_updating_class``): positive when learning
    ``updating`` raises log π(updating) on held-out ``pulled`` more than on any other class.

    Example:
      >>> import numpy as np
      >>> from ldjax._src.experiments.mnist_force.claims import pull_lead
      >>> f = np.ones((10, 10)); f[4, 9] = 2.0
      >>> round(pull_lead(f), 3)
      0.909
    """
    row = np.asarray(force_map, float)[updating]
    others = np.delete(row, [updating, pulled])
    return float((row[pulled] - others.max()) / np.mean(np.abs(row)))


def most_pulled(force_map: Float[np.ndarray, "10 10"], updating: int = 4) -> int:
    """The other class whose log π(updating) rises most when ``updating`` is learned (row ``updating``'s argmax
    without the diagonal)."""
    row = np.asarray(force_map, float)[updating].copy()
    row[updating] = -np.inf
    return int(np.argmax(row))


def self_pull(force_map: Float[np.ndarray, "10 10"], cls: int = 4) -> float:
    """``F[c, c] / mean_c' |F[c, c']|``: positive when learning ``cls`` raises log π(cls) on held-out ``cls``.

    Example:
      >>> import numpy as np
      >>> from ldjax._src.experiments.mnist_force.claims import self_pull
      >>> self_pull(-np.ones((10, 10)))
      -1.0
    """
    row = np.asarray(force_map, float)[cls]
    return float(row[cls] / np.mean(np.abs(row)))


def confusion_lead(
    mean_distribution: Float[np.ndarray, "10 10"], observed: int = 9, confused: int = 4
) -> float:
    """``π̄(confused | observed) / max_{c ∉ {observed, confused}} π̄(c | observed)`` of the mean prediction per class.

    Above 1 when the probes of class ``observed`` put more mass on ``confused`` than on any other wrong class.

    Example:
      >>> import numpy as np
      >>> from ldjax._src.experiments.mnist_force.claims import confusion_lead
      >>> p = np.full((10, 10), 0.05); p[9, 9] = 0.5; p[9, 4] = 0.1
      >>> confusion_lead(p)
      2.0
    """
    row = np.asarray(mean_distribution, float)[observed]
    return float(row[confused] / np.delete(row, [observed, confused]).max())


def fidelity(results: dict[str, Any]) -> list[claims.Row]:
    """Claims decided over the seeds (class-averaged forces, the trained model's mean prediction) and checks."""
    return [*force_map_claims(results), accumulation_claim(results), *force_checks(results)]


def force_map_claims(results: dict[str, Any]) -> list[claims.Row]:
    """``mnist.nine_pulled_most`` and ``mnist.four_raises_fours`` from every seed's force map at the last
    checkpoint."""
    maps = [np.asarray(s["force_map_towards_updating_class"]) for s in results["per_seed"]]
    epoch, m, n = (
        results["checkpoint_epochs"][-1],
        results["force_map_updates_per_class"],
        results["n_probes"],
    )
    setup = (
        f"{results['model']}; force map at epoch {epoch}: plain-SGD steps of η = {results['step_learning_rate']} "
        f"on {m} different training images per class, {n} held-out probes"
    )
    return [
        claims.claim(
            "mnist.nine_pulled_most",
            "learning 4s raises log π(4) on held-out 9s more than on any other digit",
            source=SOURCE,
            paper="9 (similar strokes) is pulled towards 4, 0 hardly (figure; no number)",
            values=[pull_lead(f) for f in maps],
            criterion=claims.Above(
                0.1,
                "the 9s' lead over the runner-up digit in the pull of learning 4s (units: the row's mean |pull|)",
            ),
            note=f"{setup}; the most pulled digit per seed: {[most_pulled(f) for f in maps]}",
        ),
        claims.claim(
            "mnist.four_raises_fours",
            "learning 4s raises log π(4) on held-out 4s",
            source=SOURCE,
            paper="the prediction of another 4 moves towards 4 (figure)",
            values=[self_pull(f) for f in maps],
            criterion=claims.Above(
                0.1, "the pull of learning 4s on held-out 4s (units: the row's mean |pull|)"
            ),
            note=setup,
        ),
    ]


def accumulation_claim(results: dict[str, Any]) -> claims.Row:
    """``mnist.pull_accumulates`` from every seed's mean prediction per class after training (the note: the
    ratio after each epoch, mean over seeds)."""
    distributions = [np.asarray(s["mean_distribution_by_epoch"]) for s in results["per_seed"]]
    curve = np.mean([[confusion_lead(p) for p in dist] for dist in distributions], axis=0)
    return claims.claim(
        "mnist.pull_accumulates",
        "accumulated over training, the pulls leave held-out 9s with more probability on 4 than on any other "
        "wrong digit",
        source=SOURCE,
        paper="the trained model's mean π of 9s is largest on 4 after 9 (heat map; no number)",
        values=[confusion_lead(dist[-1]) for dist in distributions],
        criterion=claims.Above(
            1.25, "π̄(4 | held-out 9s) / the largest π̄ of another wrong digit, after training"
        ),
        note=f"{results['model']}; this ratio after each epoch, mean over seeds: {np.round(curve, 2).tolist()}",
    )


def force_checks(results: dict[str, Any]) -> list[claims.Row]:
    """The one-step prediction at every checkpoint of every seed and the per-epoch accumulation (first seed)."""
    per_seed = results["per_seed"]
    correlations = [r for s in per_seed for r in s["one_step_correlation"]]
    epoch_corr = results["accumulation"]["epoch_correlation"]
    return [
        claims.check(
            "mnist.one_step_correlation",
            "predicted vs actual Δ log π for one SGD step on a 4 (all probes, all classes)",
            value=round(min(correlations), 5),
            holds=min(correlations) >= 0.99,
            criterion="Pearson r >= 0.99, smallest over seeds and checkpoints",
            seeds=len(per_seed),
            note=f"η = {results['step_learning_rate']}; {results['n_probes']} probes x 10 classes",
        ),
        claims.check(
            "mnist.epoch_accumulation",
            "per-epoch sum of the first-order forces of every update vs the actual change of log π over the epoch",
            value=round(min(epoch_corr), 5),
            holds=min(epoch_corr) >= 0.9,
            criterion="Pearson r >= 0.9, smallest over epochs (first seed)",
            note=f"{results['n_accumulate']} probes, every update (momentum and weight decay included)",
        ),
    ]
