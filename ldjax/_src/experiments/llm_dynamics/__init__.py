r"""Learning dynamics of LLM fine-tuning (SFT, DPO, IPO, extend, on-policy DPO) on a tiny transformer.

Ren & Sutherland (ICLR 2025) explain with the A·K·G decomposition why supervised fine-tuning also raises
dispreferred answers and the answers of OTHER questions (a kind of hallucination), and why off-policy DPO
lowers the chosen and the rejected response while the model's argmax gains (the squeezing effect). This
experiment tests those claims on :class:`ldjax.models.TinyTransformer` trained from scratch on the synthetic
preference language of :mod:`ldjax._src.data.language` (``docs/llm_language.md``), over ``seeds`` paired
seeds (seed ``k`` draws the world, the initialisation and the data order; every method of seed ``k`` starts
from the same pre-trained model and sees the same order of preference pairs):

1. :func:`~ldjax._src.experiments.llm_dynamics.phases.pretrain` on the language's corpus (each fact seen once,
   questions about people outside the world answered in the full form);
2. fine-tuning, each method recorded inside the jitted loop every ``record_every`` updates
   (:func:`~ldjax._src.experiments.llm_dynamics.world.probe_stats`: summed log π of every probe type, the
   teacher-forced argmax y* along [x; y⁺] and log(1 − p(y*)), the argmax probability at the y⁻ positions,
   ‖A‖, and the loss and ‖G‖ on the whole training set): ``sft`` and ``extend_sft`` (y⁻ in place of one
   correct answer per prompt) by :func:`~ldjax._src.experiments.llm_dynamics.phases.supervised`; ``dpo`` (from the
   SFT model, the paper's main setting), ``dpo_base`` (from the pre-trained model), ``ipo`` (τ =
   ``ipo_tau``) and ``extend`` (DPO after ``extend_sft``) by
   :func:`~ldjax._src.experiments.llm_dynamics.phases.preferences`; ``onpolicy`` (DPO on answers sampled from the
   current model and ranked by the language's reward) by :func:`~ldjax._src.experiments.llm_dynamics.phases.on_policy`;
3. :func:`first_update`: the first Adam update of ``dpo`` predicted token by token by ``first_order`` on
   held-out probes, and its force split into the y⁺ half and the y⁻ half;
4. :func:`influence_map`: the first-order change of every probe type caused by SFT on every response type
   (at the pre-trained model: an epoch's summed force at fixed parameters);
5. :func:`generation_stats`: greedy answers to every train and test prompt, judged against the world.

Claims: :mod:`ldjax._src.experiments.llm_dynamics.report`; figures:
:mod:`ldjax._src.experiments.llm_dynamics.figures`; settings, world and model:
:mod:`ldjax._src.experiments.llm_dynamics.world`. Quick settings (``Config()``): 3 seeds, 135k parameters, V = 512;
``FULL``: 5 seeds, ~14.6M parameters, sized for one GPU (not yet run on one).
"""

from __future__ import annotations

import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import Int

from ldjax._src import checks
from ldjax._src.data import language as lang_lib
from ldjax._src.data.language import EOS
from ldjax._src.data.language import PROBE_TYPES
from ldjax._src.data.language import PROMPT_LEN
from ldjax._src.experiments import common
from ldjax._src.experiments.llm_dynamics import report as llm_report
from ldjax._src.experiments.llm_dynamics.figures import plot
from ldjax._src.experiments.llm_dynamics.phases import on_policy
from ldjax._src.experiments.llm_dynamics.phases import preference_loss
from ldjax._src.experiments.llm_dynamics.phases import preference_order
from ldjax._src.experiments.llm_dynamics.phases import preferences
from ldjax._src.experiments.llm_dynamics.phases import pretrain
from ldjax._src.experiments.llm_dynamics.phases import supervised
from ldjax._src.experiments.llm_dynamics.world import FULL
from ldjax._src.experiments.llm_dynamics.world import TINY
from ldjax._src.experiments.llm_dynamics.world import Config
from ldjax._src.experiments.llm_dynamics.world import Model
from ldjax._src.experiments.llm_dynamics.world import Tokens
from ldjax._src.experiments.llm_dynamics.world import World
from ldjax._src.experiments.llm_dynamics.world import build_model
from ldjax._src.experiments.llm_dynamics.world import make_world
from ldjax._src.experiments.llm_dynamics.world import picked
from ldjax._src.experiments.llm_dynamics.world import take_rows
from ldjax._src.first_order import actual_change
from ldjax._src.first_order import batch_update
from ldjax._src.first_order import probe_change
from ldjax._src.first_order import split_change
from ldjax._src.losses import sequence as seq_losses

__all__ = ("FULL", "TINY", "Config", "fidelity", "main", "plot", "run")

PHASES = llm_report.PHASES
PROBES = llm_report.PROBES
fidelity = llm_report.fidelity


def first_update(
    config: Config,
    model: Model,
    params: Any,
    idx: Array,
    pairs: Tokens,
    ref: Array,
    probes: Tokens,
    heldout: Tokens,
) -> dict[str, Array]:
    """One seed's first update of the ``dpo`` run (Adam, fresh state, minibatch ``idx``) to first order.

    ``predicted`` (``first_order``: one VJP at the batch, Adam's update, one JVP at the probes, A applied)
    and ``actual`` change of log π of every token of the held-out probes (test prompts), and the actual change
    of a tenth of that update (``actual_tenth``: the first-order residual must shrink with it); ``split``: on the
    training probes, the change caused by the y⁺ half, the y⁻ half and the whole DPO force (plain SGD with
    ``pref_lr``: the paper's −η·A·K·G, whose parts are linear in G).
    """
    m = pairs.x.shape[0] // 2
    rows = jnp.concatenate([idx, idx + m])
    batch = take_rows(pairs, rows)
    dpo, _ = preference_loss(config, "dpo")
    step = batch_update(
        model.apply_fn,
        params,
        batch.x,
        seq_losses.PreferenceTarget(batch.tokens, batch.mask, ref[rows]),
        dpo,
        optax.adam(config.pref_lr),
    )
    predicted, z = probe_change(model.apply_fn, params, step.updates, heldout.x)
    tenth = jax.tree.map(lambda u: u / 10, step.updates)  # the same update at a tenth of the step
    b = idx.shape[0]
    parts = jnp.concatenate([jnp.repeat(jnp.eye(2), b, axis=1), jnp.ones((1, 2 * b))])  # y⁺, y⁻, whole
    split = split_change(
        model.apply_fn, params, probes.x, batch.x, parts, g=step.g, learning_rate=config.pref_lr
    )
    return {
        "predicted": picked(predicted, heldout),
        "actual": picked(actual_change(model.apply_fn, params, step.updates, heldout.x, z), heldout),
        "actual_tenth": picked(actual_change(model.apply_fn, params, tenth, heldout.x, z), heldout),
        "split": jax.vmap(lambda d: picked(d, probes))(split),
    }


def influence_map(model: Model, params: Any, probes: Tokens) -> Float[Array, "types types"]:
    """One seed's ``[trained type, observed type]``: the first-order change of summed log π of every probe type
    (mean over training prompts) caused by SFT on every response type, from ``params``.

    One full-batch plain-SGD step per trained type with learning rate 1 (the sum of an epoch's forces at
    fixed parameters, per unit learning rate): ``first_order.split_change`` with one part per type.
    """
    n_types = len(PROBE_TYPES)
    z = model.batched(params, probes.x)
    g = seq_losses.sft_g(z, seq_losses.SequenceTarget(probes.tokens, probes.mask))
    types = jnp.repeat(jnp.eye(n_types), probes.x.shape[0] // n_types, axis=1)  # [types, n]
    scale = jnp.sum(probes.mask) / (types @ jnp.sum(probes.mask, -1))  # each part: that type's own SFT loss
    parts = split_change(
        model.apply_fn, params, probes.x, probes.x, types * scale[:, None], g=g, learning_rate=1.0
    )
    summed = jax.vmap(lambda d: jnp.sum(picked(d, probes), -1))(parts)  # [trained, n]
    return summed.reshape(n_types, n_types, -1).mean(-1)


def analyses(config: Config, model: Model, world: World, sft: Any, pre: Any) -> dict[str, np.ndarray]:
    """:func:`first_update` at the SFT model and :func:`influence_map` at the pre-trained model, every seed,
    in one compiled program (full fp32 matmuls)."""
    first = preference_order(config, world.pairs.x.shape[1] // 2)[0]  # [S, B]
    ref = model.reference(sft, world.pairs)

    def one(
        p_sft: Any, p_pre: Any, idx: Array, pairs: Tokens, r: Array, probes: Tokens, heldout: Tokens
    ) -> dict:
        out = first_update(config, model, p_sft, idx, pairs, r, probes, heldout)
        out["influence"] = influence_map(model, p_pre, probes)
        return out

    with checks.precision_scope("highest"):
        out = jax.jit(jax.vmap(one))(sft, pre, first, world.pairs, ref, world.probes, world.heldout)
    return jax.tree.map(np.asarray, out)


def generation_stats(world: World, seqs: Int[np.ndarray, "S n L"]) -> dict[str, dict[str, list[float]]]:
    """Per prompt split (``train`` / ``test``) and class (:data:`GENERATION_CLASSES` and ``repeater``):
    the rate over that seed's prompts, one value per seed."""
    out: dict[str, dict[str, list[float]]] = {"train": {}, "test": {}}
    for k, lang in enumerate(world.languages):
        n_train = len(lang.train_prompts)
        for split, prompts, offset in (
            ("train", lang.train_prompts, 0),
            ("test", lang.test_prompts, n_train),
        ):
            words = [lang.decode(seqs[k, offset + i, PROMPT_LEN:]) for i in range(len(prompts))]
            bodies = [w[: w.index(EOS)] if EOS in w else w for w in words]
            classes = [lang.classify(u, w) for u, w in zip(prompts, words, strict=True)]
            for name in lang_lib.GENERATION_CLASSES:
                out[split].setdefault(name, []).append(float(np.mean([c == name for c in classes])))
            repeats = [lang_lib.repeated_bigram(b) for b in bodies]
            out[split].setdefault("repeater", []).append(float(np.mean(repeats)))
    return out


def run(config: Config, *, data_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Pre-train, fine-tune with every method, record probes, analyse forces and generations; deterministic.

    Returns a dict: per phase ``p`` in :data:`PHASES`, ``p_logp`` ``[records, S, len(PROBES)]`` (summed
    log π of each probe type, mean over the training prompts), ``p_argmax_prob_rejected``,
    ``p_argmax_prob_valley``, ``p_a_norm``, ``p_g_norm`` and ``p_loss`` ``[records, S]`` (the last two on
    the phase's whole training set); ``pretrain_losses`` ``[steps]`` (mean over seeds); ``generation``
    (:func:`generation_stats` of the pre-trained model and of every phase); ``examples`` (a few greedy
    answers); ``force`` (:func:`first_update`, flattened) and ``influence`` ``[S, types, types]``
    (:func:`influence_map` at the pre-trained model).
    """
    del data_dir  # synthetic data, no files
    world = make_world(config)
    model, params, n_params = build_model(config)
    pre = pretrain(config, model, world, params, progress=progress)
    runs = supervised(
        config, model, world, pre.params, {"sft": world.sft, "extend_sft": world.extend}, progress=progress
    )
    sft = runs["sft"].params
    starts = {
        "dpo": ("dpo", sft),
        "dpo_base": ("dpo", pre.params),
        "ipo": ("ipo", sft),
        "extend": ("dpo", runs["extend_sft"].params),
    }
    runs.update(preferences(config, model, world, starts, progress=progress))
    runs["onpolicy"] = on_policy(config, model, world, sft, progress=progress)

    lang = world.languages[0]
    results: dict[str, Any] = {
        "dataset": f"synthetic preference language, {config.seeds} seeds (worlds): {len(lang.train_prompts)} "
        f"train / {len(lang.test_prompts)} test prompts, V={lang.vocab_size}, pre-training corpus of "
        f"{world.pretrain.x.shape[1]} documents",
        "n_params": n_params,
        "seeds": config.seeds,
        "probe_types": list(PROBES),
        "phases": list(PHASES),
        "record_every": config.record_every,
        "pretrain_losses": np.asarray(pre.losses) / config.seeds,
    }
    for name in PHASES:
        rec = jax.tree.map(np.asarray, runs[name].records)
        results[f"{name}_logp"] = rec["logp"].mean(-1)  # [records, S, probes]
        for key in ("loss", "argmax_prob_rejected", "argmax_prob_valley", "a_norm", "g_norm"):
            results[f"{name}_{key}"] = rec[key]
    models = {"pretrained": pre.params, **{name: runs[name].params for name in PHASES}}
    answers = {name: np.asarray(model.greedy(p, world.queries)) for name, p in models.items()}
    results["generation"] = {name: generation_stats(world, seqs) for name, seqs in answers.items()}
    results["examples"] = [
        line for name in ("pretrained", "sft", "dpo") for line in _examples(world, answers[name], name)
    ]
    out = analyses(config, model, world, sft, pre.params)
    results["influence"] = out.pop("influence")
    results["force"] = _force_results(out, world)
    return results


def _examples(world: World, seqs: np.ndarray, name: str) -> list[str]:
    """A few greedy answers of seed 0 to its test prompts, as text."""
    lang = world.languages[0]
    n_train = len(lang.train_prompts)
    lines = []
    for i, u in enumerate(lang.test_prompts[:3]):
        words = lang.decode(seqs[0, n_train + i, PROMPT_LEN:])
        body = words[: words.index(EOS)] if EOS in words else words
        lines.append(f"{name}: who is {u.entity} ? -> {' '.join(body)} [{lang.classify(u, words)}]")
    return lines


def _force_results(out: dict[str, np.ndarray], world: World) -> dict[str, Any]:
    """Flatten the per-seed force analysis into what the claims and figures read."""
    n_types = len(PROBE_TYPES)
    mask = np.asarray(world.heldout.mask) > 0  # [S, n, T]
    res: dict[str, Any] = {}
    res["heldout_token_actual_tenth"] = np.stack(
        [v[k] for k, v in zip(mask, out["actual_tenth"], strict=True)]
    )
    for kind in ("predicted", "actual"):
        res[f"heldout_token_{kind}"] = np.stack([v[k] for k, v in zip(mask, out[kind], strict=True)])
        res[f"heldout_sequence_{kind}"] = out[kind].sum(-1)
    split = out["split"].sum(-1)  # [S, 3, n]: y⁺ half, y⁻ half, whole (plain SGD)
    res["split"] = split.reshape(*split.shape[:2], n_types, -1).mean(-1)  # [S, 3, types]
    res["split_residual"] = np.abs(out["split"][:, 0] + out["split"][:, 1] - out["split"][:, 2]).max(
        axis=(1, 2)
    )
    res["split_scale"] = np.abs(out["split"][:, 2]).max(axis=(1, 2))
    return res


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)
