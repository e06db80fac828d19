"""Bad inputs across the API and the command line, as a hostile but fair user would give them.

Every case is a call that must fail early with a clean message: an API case raises the exception of the
table with exactly its message (nothing is computed first, nothing is returned); a command-line case exits
with code 2 and exactly one line on stderr, no traceback; a scenario (stale or corrupt results, a killed
``--force``, two runs into one ``--out``) runs end to end through ``ldjax reproduce`` and checks what it
left behind. The crafted data files are in ``tests/test_data_crafted.py``.

Run as a script (``python tests/test_bad_inputs.py``) to count how the checkout on ``PYTHONPATH`` handles
the table: clean (an error from ldjax naming the argument; exit code 2 with one line) / generic (an error
from deep in JAX or optax, a traceback) / silently wrong (a result, exit code 0, or a scenario that left the
wrong thing behind).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ldjax
from ldjax import losses

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # fake_experiments, when run as a script

import fake_experiments  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: ``call()`` must raise ``error`` with exactly ``message`` (``{d}``: the case's folder)."""

    id: str
    call: Callable[..., Any]
    message: str
    error: type[BaseException] = ValueError


# ---------------------------------------------------------------------------------------------- small problems


def mlp(p, x):
    """One example ``[4] -> [3]``."""
    return jnp.tanh(x @ p["w1"]) @ p["w2"]


def seq(p, t):
    """One sequence of token ids ``[T] -> [T, V=5]``."""
    return jnp.tanh(p["emb"][t]) @ p["out"]


@jax.custom_vjp
def _sin(x):
    return jnp.sin(x)


_sin.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (g * jnp.cos(x),))


def custom(p, x):
    """:func:`mlp` with a ``jax.custom_vjp`` activation (no forward mode)."""
    return _sin(x @ p["w1"]) @ p["w2"]


def with_leaf(tree, key, value):
    return {**tree, key: value}


def nan_at(a, index=(0, 0)):
    return jnp.asarray(a).at[index].set(jnp.nan)


_k = jax.random.split(jax.random.key(0), 6)
P = {"w1": jax.random.normal(_k[0], (4, 5)), "w2": jax.random.normal(_k[1], (5, 3))}
X = jax.random.normal(_k[2], (3, 4))
Y = jnp.array([0, 2, 1])
PS = {"emb": jax.random.normal(_k[3], (5, 3)), "out": jax.random.normal(_k[4], (3, 5))}
TOK = jnp.array([[0, 1, 2, 3], [4, 3, 2, 1]])
SEQ_T = losses.SequenceTarget(TOK, jnp.ones((2, 4)))
PREF_T = losses.PreferenceTarget(TOK, jnp.ones((2, 4)), jnp.zeros(2))
POLICY_T = losses.PolicyTarget(TOK, jnp.ones((2, 4)), jnp.array([1.0, -1.0]))
CE, SGD = losses.cross_entropy, 0.1
MOMENTUM_STATE = optax.sgd(0.1, momentum=0.9).init(P)
ADAM_STATE = optax.adam(0.1).init(P)
NAN_ADAM_STATE = (
    ADAM_STATE[0]._replace(nu={"w1": nan_at(jnp.ones((4, 5))), "w2": jnp.ones((5, 3))}),
    ADAM_STATE[1],
)


@functools.cache
def transformer():
    """A tiny :class:`ldjax.models.TinyTransformer` (V=11, max_len=8) as ``(apply_fn, params)``."""
    from flax import nnx

    from ldjax.models import TinyTransformer

    return ldjax.from_nnx(TinyTransformer(11, 8, 8, 2, 1, 16, rngs=nnx.Rngs(0)))


def lm(tokens, **kwargs):
    f, p = transformer()
    target = losses.SequenceTarget(jnp.zeros_like(tokens[:1]), jnp.ones(tokens[:1].shape))
    return ldjax.one_step(f, p, tokens, tokens[:1], target, loss=losses.sft, learning_rate=SGD, **kwargs)


def step(**over):
    """``ldjax.one_step`` on the MLP problem with some arguments replaced."""
    args = {"apply_fn": mlp, "params": P, "x_o": X, "x_u": X[:2], "y_u": Y[:2]}
    kwargs = {"loss": CE, "learning_rate": SGD}
    for key in list(over):
        if key in args:
            args[key] = over.pop(key)
    kwargs.update(over)
    return ldjax.one_step(*args.values(), **kwargs)


def predict(**over):
    """``ldjax.predict_log_prob_change`` on the sequence problem with some arguments replaced."""
    args = {"apply_fn": seq, "params": PS, "x_probe": TOK, "x_u": TOK, "y_u": SEQ_T}
    kwargs = {"loss": losses.sft, "learning_rate": SGD}
    for key in list(over):
        if key in args:
            args[key] = over.pop(key)
    kwargs.update(over)
    return ldjax.predict_log_prob_change(*args.values(), **kwargs)


def precond(x_o=X, **over):
    """``ldjax.preconditioned_one_step`` (Adam) on the MLP problem with some arguments replaced."""
    kwargs = {"loss": CE, "optimizer": "adam", "learning_rate": 1e-3}
    kwargs.update(over)
    return ldjax.preconditioned_one_step(mlp, P, x_o, X[:2], Y[:2], **kwargs)


def mesh(name="probe"):
    return jax.sharding.Mesh(np.array(jax.devices()[:1]), (name,))


INT_LEAF = with_leaf(P, "w2", jnp.ones((5, 3), jnp.int32))
# message parts shared by several cases
TWO_D = ". apply_fn(params, x) must return [k] for ONE example; a 2-D output is read as a sequence model's [T, V] only for integer token inputs [T] or when declared with ldjax.as_apply_fn(f, sequence_output=True)"
FLOAT_LEAF = ": every leaf of params must be a float array (derivatives are taken with respect to every leaf); keep integer or boolean state out of params, e.g. in a closure of apply_fn"
SAME_OPTIMIZER = ". Pass the state of the same optimizer (its init(params), or its state after training)"
TRY_ANYWAY = ". To try anyway pass memory_budget=<bytes> (math.inf: no check)"
FINITE = " NaN or inf value(s): expected finite numbers"
REPLACED = ": ldjax replaces its output folder whole when it reruns"
NO_STATE = "opt_state was given but optimizer is None: pass the optax optimizer whose state it is (e.g. optimizer=optax.adam(1e-3)); plain SGD has no state"
API_CASES = [
    # -- empirical_ntk / empirical_ntk_fn: finite values, batch axes, parameter dtypes, options, memory
    Case(
        "ntk.nan_params",
        lambda: ldjax.empirical_ntk(mlp, with_leaf(P, "w1", nan_at(P["w1"])), X),
        "params['w1'] contains 1" + FINITE,
    ),
    Case(
        "ntk.inf_x1",
        lambda: ldjax.empirical_ntk(mlp, P, X.at[1, 2].set(jnp.inf)),
        "x1 contains 1" + FINITE,
    ),
    Case(
        "ntk.nan_x2",
        lambda: ldjax.empirical_ntk(mlp, P, X, nan_at(X[:2])),
        "x2 contains 1" + FINITE,
    ),
    Case(
        "ntk.fn_nan_params",
        lambda: ldjax.empirical_ntk_fn(mlp)(with_leaf(P, "w2", nan_at(P["w2"])), X),
        "params['w2'] contains 1" + FINITE,
    ),
    Case(
        "ntk.x_batched_twice",
        lambda: ldjax.empirical_ntk(mlp, P, jnp.stack([X[:2], X[1:]])),
        "apply_fn returned logits of shape (2, 3) for one example of x1: its leading axis equals the batch size n=2 of x1: apply_fn seems to see the whole batch (x1 batched twice, or a closure over the batch)"
        + TWO_D,
    ),
    Case(
        "ntk.apply_fn_adds_batch_axis",
        lambda: ldjax.empirical_ntk(lambda p, x: mlp(p, x[None]), P, X),
        "apply_fn returned logits of shape (1, 3) for one example of x1: its leading axis of size 1 looks like a batch axis that apply_fn adds itself"
        + TWO_D,
    ),
    Case(
        "ntk.apply_fn_sees_whole_batch",
        lambda: ldjax.empirical_ntk(lambda p, x: mlp(p, X + 0 * x), P, X),
        "apply_fn returned logits of shape (3, 3) for one example of x1: its leading axis equals the batch size n=3 of x1: apply_fn seems to see the whole batch (x1 batched twice, or a closure over the batch)"
        + TWO_D,
    ),
    Case(
        "ntk.output_3d",
        lambda: ldjax.empirical_ntk(lambda p, x: mlp(p, x)[None, None], P, X),
        "apply_fn returned logits of shape (1, 1, 3) for one example of x1: expected [k] (classifier) or [T, V] (sequence model). Is x1 batched twice, or does apply_fn add a batch axis?",
    ),
    Case(
        "ntk.output_tuple",
        lambda: ldjax.empirical_ntk(lambda p, x: (mlp(p, x), 0.0), P, X),
        "apply_fn must return one array of logits, got tuple",
    ),
    Case(
        "ntk.int_leaf_jacobian",
        lambda: ldjax.empirical_ntk(mlp, INT_LEAF, X, method="jacobian"),
        "params['w2'] has dtype int32" + FLOAT_LEAF,
    ),
    Case(
        "ntk.int_leaf_structured",
        lambda: ldjax.empirical_ntk(mlp, INT_LEAF, X, method="structured"),
        "params['w2'] has dtype int32" + FLOAT_LEAF,
    ),
    Case(
        "ntk.int_leaf_vector_products",
        lambda: ldjax.empirical_ntk(mlp, INT_LEAF, X, method="vector_products"),
        "params['w2'] has dtype int32" + FLOAT_LEAF,
    ),
    Case(
        "ntk.bool_leaf",
        lambda: ldjax.empirical_ntk(mlp, with_leaf(P, "mask", jnp.ones(3, bool)), X),
        "params['mask'] has dtype bool" + FLOAT_LEAF,
    ),
    Case(
        "ntk.string_leaf",
        lambda: ldjax.empirical_ntk(mlp, with_leaf(P, "name", "mlp"), X),
        "params['name'] is a str, not an array: every leaf of params must be a float array",
    ),
    Case(
        "ntk.empty_params",
        lambda: ldjax.empirical_ntk(lambda p, x: x[:3], {}, X),
        "params has no leaves: expected a pytree of float arrays (the model's parameters)",
    ),
    Case(
        "ntk.scalar_x1",
        lambda: ldjax.empirical_ntk(mlp, P, jnp.float32(1.0)),
        "x1 is a scalar: expected a batch of examples [n, *d]; for one example x use x[None]",
    ),
    Case(
        "ntk.empty_batch",
        lambda: ldjax.empirical_ntk(mlp, P, X[:0]),
        "x1 is an empty batch (shape (0, 4)): expected n >= 1 examples",
    ),
    Case(
        "ntk.example_shapes_differ",
        lambda: ldjax.empirical_ntk(mlp, P, X, X[:, :3]),
        "x1 holds examples of shape (4,) but x2 holds examples of shape (3,): both must be batches [n, *d] of the same example shape",
    ),
    Case(
        "ntk.unknown_method",
        lambda: ldjax.empirical_ntk(mlp, P, X, method="magic"),
        "method must be 'auto' or 'jacobian' or 'vector_products' or 'structured', got 'magic'",
    ),
    Case(
        "ntk.unknown_precision",
        lambda: ldjax.empirical_ntk(mlp, P, X, precision="fast"),
        "precision must be one of ('highest', 'high', 'default', 'float32', 'bfloat16', 'tensorfloat32') or None, got 'fast'",
    ),
    Case(
        "ntk.custom_vjp_vector_products",
        lambda: ldjax.empirical_ntk(custom, P, X, method="vector_products"),
        "apply_fn uses jax.custom_vjp, which has no forward mode, and empirical_ntk(method='vector_products') takes a JVP of the model. Models with custom_vjp work with empirical_ntk(method='jacobian' or 'structured'); for empirical_ntk(method='vector_products') define the custom derivative with jax.custom_jvp instead",
    ),
    Case(
        "ntk.memory_jacobian",
        lambda: ldjax.empirical_ntk(mlp, P, X, memory_budget=1000, method="jacobian"),
        "empirical_ntk(method='jacobian') would need about 1.5 KiB (the kernel [3, 3, 3, 3]: 324 B; per-example Jacobians of 3 examples: 1.2 KiB), more than the memory budget of 1000 B (memory_budget=1000). Cheaper: trace=True (a kernel [n1, n2]), method='structured' (no Jacobians) or fewer examples per call (blocks of x1)"
        + TRY_ANYWAY,
    ),
    Case(
        "ntk.memory_structured",
        lambda: ldjax.empirical_ntk(mlp, P, X, method="structured", memory_budget=300),
        "empirical_ntk(method='structured') would need about 324 B (the kernel [3, 3, 3, 3]: 324 B), more than the memory budget of 300 B (memory_budget=300). Cheaper: trace=True (a kernel [n1, n2]) or fewer examples per call (blocks of x1)"
        + TRY_ANYWAY,
    ),
    Case(
        "ntk.fn_memory",
        lambda: ldjax.empirical_ntk_fn(mlp, per_layer=True, memory_budget=500, method="jacobian")(P, X),
        "empirical_ntk(method='jacobian') would need about 1.9 KiB (the kernel [3, 3, 3, 3] x 2 layers: 648 B; per-example Jacobians of 3 examples: 1.2 KiB), more than the memory budget of 500 B (memory_budget=500). Cheaper: trace=True (a kernel [n1, n2]), method='structured' (no Jacobians) or fewer examples per call (blocks of x1)"
        + TRY_ANYWAY,
    ),
    Case(
        "ntk.memory_budget_negative",
        lambda: ldjax.empirical_ntk(mlp, P, X, memory_budget=-1),
        "memory_budget must be a positive number of bytes (or math.inf), got -1",
    ),
    Case(
        "ntk.token_id_too_large",
        lambda: ldjax.empirical_ntk(transformer()[0], transformer()[1], TOK.at[0, 0].set(99)),
        "x1 holds ids in [1, 99] but the vocabulary has V=11 entries: expected ids in [0, 11)",
    ),
    Case(
        "ntk.token_id_negative",
        lambda: ldjax.empirical_ntk(transformer()[0], transformer()[1], TOK.at[1, 3].set(-3)),
        "x1 holds ids in [-3, 4] but the vocabulary has V=11 entries: expected ids in [0, 11)",
    ),
    Case(
        "ntk.tokens_longer_than_max_len",
        lambda: ldjax.empirical_ntk(transformer()[0], transformer()[1], jnp.zeros((2, 9), int)),
        "x1 has length T=9 but the model has max_len=8 positions",
    ),
    Case(
        "ntk.float_tokens",
        lambda: ldjax.empirical_ntk(transformer()[0], transformer()[1], TOK * 1.0),
        "x1 must hold integer token ids in [0, 11), got dtype float32",
    ),
    Case(
        "ntk.example_shape_declared",
        lambda: ldjax.empirical_ntk(ldjax.as_apply_fn(mlp, (4,)), P, X[None]),
        "x1 has shape (1, 3, 4) but apply_fn expects one example of shape (4,): pass a batch [n, 4]",
    ),
    Case(
        "ntk.vector_product_v_shape",
        lambda: ldjax.ntk_vector_product(mlp, P, X, X, jnp.ones((3, 2))),
        "v has shape (3, 2) but the logits of x2 have shape (3, 3)",
    ),
    # -- one_step: values, update rule, optimizer and its state, targets, loss, model
    Case(
        "one_step.nan_params",
        lambda: step(params=with_leaf(P, "w2", nan_at(P["w2"]))),
        "params['w2'] contains 1" + FINITE,
    ),
    Case(
        "one_step.inf_x_o",
        lambda: step(x_o=X.at[2, 0].set(-jnp.inf)),
        "x_o contains 1" + FINITE,
    ),
    Case(
        "one_step.nan_x_u",
        lambda: step(x_u=nan_at(X[:2])),
        "x_u contains 1" + FINITE,
    ),
    Case(
        "one_step.nan_soft_target",
        lambda: step(loss=losses.soft_cross_entropy, y_u=nan_at(jnp.full((2, 3), 1 / 3))),
        "y_u contains 1" + FINITE,
    ),
    Case(
        "one_step.nan_opt_state",
        lambda: step(learning_rate=None, optimizer=optax.adam(0.1), opt_state=NAN_ADAM_STATE),
        "opt_state[0].nu['w1'] contains 1" + FINITE,
    ),
    Case(
        "one_step.negative_learning_rate",
        lambda: step(learning_rate=-0.01),
        "learning_rate must be a positive finite scalar, got -0.01",
    ),
    Case(
        "one_step.zero_learning_rate",
        lambda: step(learning_rate=0.0),
        "learning_rate must be a positive finite scalar, got 0.0",
    ),
    Case(
        "one_step.nan_learning_rate",
        lambda: step(learning_rate=float("nan")),
        "learning_rate must be a positive finite scalar, got nan",
    ),
    Case(
        "one_step.vector_learning_rate",
        lambda: step(learning_rate=jnp.ones(2)),
        "learning_rate must be a positive finite scalar, got Array([1., 1.], dtype=float32)",
    ),
    Case(
        "one_step.no_learning_rate",
        lambda: step(learning_rate=None),
        "learning_rate is required with the default plain SGD (optimizer=None)",
    ),
    Case(
        "one_step.learning_rate_and_optimizer",
        lambda: step(optimizer=optax.adam(0.1)),
        "learning_rate must be None when optimizer is given: the optimizer carries its own schedule",
    ),
    Case(
        "one_step.optimizer_string",
        lambda: step(learning_rate=None, optimizer="adam"),
        "optimizer must be an optax.GradientTransformation such as optax.adam(1e-3), got the string 'adam'; ldjax.preconditioned_one_step takes optimizer names ('sgd', 'momentum', 'rmsprop', 'adam')",
    ),
    Case(
        "one_step.optimizer_object",
        lambda: step(learning_rate=None, optimizer=object()),
        "optimizer must be an optax.GradientTransformation (with init and update), got object",
    ),
    Case(
        "one_step.opt_state_without_optimizer",
        lambda: step(opt_state=ADAM_STATE),
        NO_STATE,
    ),
    Case(
        "one_step.momentum_state_for_adam",
        lambda: step(learning_rate=None, optimizer=optax.adam(0.1), opt_state=MOMENTUM_STATE),
        "opt_state does not fit optimizer: its init(params) gives (ScaleByAdamState(count, mu, nu), EmptyState()) but opt_state is (TraceState(trace), EmptyState()), without the field(s) 'count', 'mu', 'nu'"
        + SAME_OPTIMIZER,
    ),
    Case(
        "one_step.adam_state_for_momentum",
        lambda: step(learning_rate=None, optimizer=optax.sgd(0.1, momentum=0.9), opt_state=ADAM_STATE),
        "opt_state does not fit optimizer: its init(params) gives (TraceState(trace), EmptyState()) but opt_state is (ScaleByAdamState(count, mu, nu), EmptyState()), without the field(s) 'trace'"
        + SAME_OPTIMIZER,
    ),
    Case(
        "one_step.adam_state_for_rmsprop",
        lambda: step(learning_rate=None, optimizer=optax.rmsprop(0.1), opt_state=ADAM_STATE),
        "opt_state does not fit optimizer: its init(params) gives (ScaleByRmsState(nu), EmptyState(), EmptyState()) but opt_state is (ScaleByAdamState(count, mu, nu), EmptyState())"
        + SAME_OPTIMIZER,
    ),
    Case(
        "one_step.sgd_state_for_adam",
        lambda: step(learning_rate=None, optimizer=optax.adam(0.1), opt_state=optax.sgd(0.1).init(P)),
        "opt_state does not fit optimizer: its init(params) gives (ScaleByAdamState(count, mu, nu), EmptyState()) but opt_state is (EmptyState(), EmptyState()), without the field(s) 'count', 'mu', 'nu', 'w1', 'w2'"
        + SAME_OPTIMIZER,
    ),
    Case(
        "one_step.dict_state_for_adam",
        lambda: step(learning_rate=None, optimizer=optax.adam(0.1), opt_state={"mu": P, "nu": P}),
        "opt_state does not fit optimizer: its init(params) gives (ScaleByAdamState(count, mu, nu), EmptyState()) but opt_state is a dict with keys 'mu', 'nu', without the field(s) 'count'"
        + SAME_OPTIMIZER,
    ),
    Case(
        "one_step.state_of_other_params",
        lambda: step(
            learning_rate=None,
            optimizer=optax.adam(0.1),
            opt_state=optax.adam(0.1).init({"w1": P["w1"][:2], "w2": P["w2"]}),
        ),
        "opt_state[0].mu['w1'] has shape (2, 5) but optimizer's init(params) gives (4, 5): is opt_state from another model?",
    ),
    Case(
        "one_step.scalar_label",
        lambda: step(x_u=X[:1], y_u=jnp.array(2)),
        "y_u is a scalar: expected one target per example of x_u, a batch of 1 (e.g. labels of shape (1,))",
    ),
    Case(
        "one_step.label_too_large",
        lambda: step(y_u=jnp.array([0, 9])),
        "y_u holds labels in [0, 9] but the model has k=3 classes: expected labels in [0, 3)",
    ),
    Case(
        "one_step.label_negative",
        lambda: step(y_u=jnp.array([-1, 0])),
        "y_u holds labels in [-1, 0] but the model has k=3 classes: expected labels in [0, 3)",
    ),
    Case(
        "one_step.float_labels",
        lambda: step(y_u=jnp.array([0.0, 1.0])),
        "y_u must hold integer class labels in [0, 3), got dtype float32",
    ),
    Case(
        "one_step.labels_count",
        lambda: step(y_u=Y),
        "y_u has 3 targets but x_u has 2 examples: expected one target each",
    ),
    Case(
        "one_step.labels_column",
        lambda: step(y_u=Y[:2, None]),
        "y_u has shape (2, 1): expected one label per example [n] for logits of shape (3,) per example",
    ),
    Case(
        "one_step.one_hot_labels",
        lambda: step(y_u=jax.nn.one_hot(Y[:2], 3)),
        "y_u must hold integer class labels in [0, 3), got dtype float32",
    ),
    Case(
        "one_step.soft_targets_not_distributions",
        lambda: step(loss=losses.soft_cross_entropy, y_u=jnp.ones((2, 3))),
        "y_u rows must be probability distributions (non-negative, summing to 1)",
    ),
    Case(
        "one_step.loss_string",
        lambda: step(loss="cross_entropy"),
        "loss must be a function loss(logits, target) -> scalar, got str",
    ),
    Case(
        "one_step.loss_not_scalar",
        lambda: step(loss=lambda z, y: z.sum(-1)),
        "loss must return a scalar (the mean loss over the batch), got shape (2,); reduce it, e.g. with .mean()",
    ),
    Case(
        "one_step.loss_fails",
        lambda: step(loss=lambda z, y: z @ y),
        "loss(logits, target) failed on logits of shape (2, 3): dot_general requires contracting dimensions to have the same shape, got (3,) and (2,).",
    ),
    Case(
        "one_step.examples_differ",
        lambda: step(x_o=X[:, :3]),
        "x_o holds examples of shape (3,) but x_u holds examples of shape (4,): both must be batches [n, *d] of the same example shape",
    ),
    Case(
        "one_step.x_u_batched_twice",
        lambda: step(x_u=X[None, :2], x_o=X[None, :2], y_u=Y[:1]),
        "apply_fn returned logits of shape (2, 3) for one example of x_u: x_u may be batched twice (its examples have shape (2, 4))"
        + TWO_D,
    ),
    Case(
        "one_step.int_leaf",
        lambda: step(params=INT_LEAF),
        "params['w2'] has dtype int32" + FLOAT_LEAF,
    ),
    Case(
        "one_step.custom_vjp",
        lambda: step(apply_fn=custom),
        "apply_fn uses jax.custom_vjp, which has no forward mode, and one_step takes a JVP of the model. Models with custom_vjp work with empirical_ntk(method='jacobian' or 'structured'); for one_step define the custom derivative with jax.custom_jvp instead",
    ),
    Case(
        "one_step.memory_terms",
        lambda: step(memory_budget=400, method="jacobian"),
        "one_step(terms=True, method='jacobian') would need about 2.4 KiB (k [3, 2, 3, 3]: 216 B; per-example Jacobians of 5 examples: 2.1 KiB; a [3, 3, 3]: 108 B), more than the memory budget of 400 B (memory_budget=400). Cheaper: terms=False (predicted, actual and g need no kernel: one VJP and one JVP), ldjax.predict_log_prob_change for vocabulary-scale changes, or ldjax.empirical_ntk with trace=True or method='structured' for the kernel alone"
        + TRY_ANYWAY,
    ),
    Case(
        "one_step.unknown_precision",
        lambda: step(precision="fast"),
        "precision must be one of ('highest', 'high', 'default', 'float32', 'bfloat16', 'tensorfloat32') or None, got 'fast'",
    ),
    Case(
        "one_step.token_id_too_large",
        lambda: lm(TOK.at[1, 1].set(99)),
        "x_o holds ids in [0, 99] but the vocabulary has V=11 entries: expected ids in [0, 11)",
    ),
    Case(
        "one_step.token_id_negative",
        lambda: lm(TOK.at[0, 0].set(-3)),
        "x_o holds ids in [-3, 4] but the vocabulary has V=11 entries: expected ids in [0, 11)",
    ),
    Case(
        "one_step_fn.optimizer_string",
        lambda: ldjax.one_step_fn(mlp, CE, optimizer="sgd"),
        "optimizer must be an optax.GradientTransformation such as optax.sgd(1e-3), got the string 'sgd'; ldjax.preconditioned_one_step takes optimizer names ('sgd', 'momentum', 'rmsprop', 'adam')",
    ),
    Case(
        "one_step_fn.memory_budget_zero",
        lambda: ldjax.one_step_fn(mlp, CE, memory_budget=0),
        "memory_budget must be a positive number of bytes (or math.inf), got 0",
    ),
    # -- predict_log_prob_change / predict_fn: sequence targets, preference targets, policy targets
    Case(
        "predict.nan_params",
        lambda: predict(params=with_leaf(PS, "emb", nan_at(PS["emb"]))),
        "params['emb'] contains 1" + FINITE,
    ),
    Case(
        "predict.target_id_too_large",
        lambda: predict(y_u=SEQ_T._replace(tokens=TOK.at[0, 1].set(99))),
        "y_u.tokens holds ids in [0, 99] but the vocabulary has V=5 entries: expected ids in [0, 5)",
    ),
    Case(
        "predict.target_id_negative",
        lambda: predict(y_u=SEQ_T._replace(tokens=TOK.at[1, 2].set(-3))),
        "y_u.tokens holds ids in [-3, 4] but the vocabulary has V=5 entries: expected ids in [0, 5)",
    ),
    Case(
        "predict.target_float_ids",
        lambda: predict(y_u=SEQ_T._replace(tokens=TOK * 1.0)),
        "y_u.tokens must hold integer token ids in [0, 5), got dtype float32",
    ),
    Case(
        "predict.target_wrong_length",
        lambda: predict(y_u=losses.SequenceTarget(TOK[:, :3], jnp.ones((2, 3)))),
        "y_u.tokens has shape (2, 3): expected [n, 4] (one target token per logit position)",
    ),
    Case(
        "predict.target_negative_mask",
        lambda: predict(y_u=SEQ_T._replace(mask=-jnp.ones((2, 4)))),
        "y_u.mask must hold finite non-negative weights (1 on response tokens)",
    ),
    Case(
        "predict.target_mask_shape",
        lambda: predict(y_u=SEQ_T._replace(mask=jnp.ones((2, 3)))),
        "y_u.mask has shape (2, 3): expected the shape of tokens (2, 4)",
    ),
    Case(
        "predict.target_tuple",
        lambda: predict(y_u=(TOK, jnp.ones((2, 4)))),
        "y_u must be a ldjax.losses.SequenceTarget(tokens, mask), got tuple",
    ),
    Case(
        "predict.preference_odd_rows",
        lambda: predict(
            x_u=TOK[:1],
            y_u=losses.PreferenceTarget(TOK[:1], jnp.ones((1, 4)), jnp.zeros(1)),
            loss=losses.dpo_fn(0.1),
        ),
        "y_u has 1 rows: expected 2m rows, the m chosen responses followed by the m rejected ones",
    ),
    Case(
        "predict.preference_ref_shape",
        lambda: predict(y_u=PREF_T._replace(ref_logp=jnp.zeros(3)), loss=losses.dpo_fn(0.1)),
        "y_u.ref_logp has 3 targets but x_u has 2 examples: expected one target each",
    ),
    Case(
        "predict.preference_id_too_large",
        lambda: predict(y_u=PREF_T._replace(tokens=TOK.at[0, 0].set(5)), loss=losses.ipo_fn(0.1)),
        "y_u.tokens holds ids in [1, 5] but the vocabulary has V=5 entries: expected ids in [0, 5)",
    ),
    Case(
        "predict.policy_advantages_shape",
        lambda: predict(y_u=POLICY_T._replace(advantages=jnp.ones(3)), loss=losses.grpo),
        "y_u.advantages has 3 targets but x_u has 2 examples: expected one target each",
    ),
    Case(
        "predict.policy_nan_advantages",
        lambda: predict(y_u=POLICY_T._replace(advantages=jnp.array([jnp.nan, 1.0])), loss=losses.grpo),
        "y_u.advantages contains 1" + FINITE,
    ),
    Case(
        "predict.optimizer_string",
        lambda: predict(learning_rate=None, optimizer="adam"),
        "optimizer must be an optax.GradientTransformation such as optax.adam(1e-3), got the string 'adam'; ldjax.preconditioned_one_step takes optimizer names ('sgd', 'momentum', 'rmsprop', 'adam')",
    ),
    Case(
        "predict.opt_state_without_optimizer",
        lambda: predict(opt_state=optax.adam(0.1).init(PS)),
        NO_STATE,
    ),
    Case(
        "predict.negative_learning_rate",
        lambda: predict(learning_rate=-1e-3),
        "learning_rate must be a positive finite scalar, got -0.001",
    ),
    Case(
        "predict.memory",
        lambda: predict(memory_budget=100),
        "predict_log_prob_change would need about 480 B (3 arrays [2, 4, 5]: 480 B), more than the memory budget of 100 B (memory_budget=100). Cheaper: fewer probes per call, ldjax.sharded_log_prob_change over several devices, or one position of a sequence model (lambda p, x: f(p, x)[-1])"
        + TRY_ANYWAY,
    ),
    Case(
        "predict.custom_vjp",
        lambda: ldjax.predict_log_prob_change(custom, P, X, X[:2], Y[:2], loss=CE, learning_rate=SGD),
        "apply_fn uses jax.custom_vjp, which has no forward mode, and predict_log_prob_change takes a JVP of the model. Models with custom_vjp work with empirical_ntk(method='jacobian' or 'structured'); for predict_log_prob_change define the custom derivative with jax.custom_jvp instead",
    ),
    Case(
        "predict.float_sequence_undeclared",
        lambda: predict(apply_fn=lambda p, x: seq(p, x.astype(int)), x_probe=TOK * 1.0, x_u=TOK * 1.0),
        "apply_fn returned logits of shape (4, 5) for one example of x_u: x_u may be batched twice (its examples have shape (4,))"
        + TWO_D,
    ),
    Case(
        "predict_fn.nan_x_probe",
        lambda: ldjax.predict_fn(mlp, CE)(P, nan_at(X), X[:2], Y[:2], learning_rate=SGD),
        "x_probe contains 1" + FINITE,
    ),
    # -- g_term and the losses called directly
    Case(
        "g_term.label_too_large",
        lambda: ldjax.g_term(CE, jnp.zeros((2, 3)), jnp.array([0, 9])),
        "target holds labels in [0, 9] but the model has k=3 classes: expected labels in [0, 3)",
    ),
    Case(
        "g_term.scalar_label",
        lambda: ldjax.g_term(CE, jnp.zeros((1, 3)), jnp.array(2)),
        "target is a scalar: expected one target per example of logits, a batch of 1 (e.g. labels of shape (1,))",
    ),
    Case(
        "g_term.labels_count",
        lambda: ldjax.g_term(CE, jnp.zeros((2, 3)), jnp.array([0, 1, 2])),
        "target has 3 targets but logits has 2 examples: expected one target each",
    ),
    Case(
        "g_term.logits_one_example",
        lambda: ldjax.g_term(CE, jnp.zeros(3), jnp.array([0])),
        "logits has shape (3,): expected a batch [n, *o] (for one example use logits[None])",
    ),
    Case(
        "g_term.loss_not_scalar",
        lambda: ldjax.g_term(lambda z, y: z.sum(-1), jnp.zeros((2, 3)), Y[:2]),
        "loss_fn must return a scalar (the mean loss over the batch), got shape (2,); reduce it, e.g. with .mean()",
    ),
    Case(
        "g_term.sequence_id_too_large",
        lambda: ldjax.g_term(losses.sft, jnp.zeros((2, 4, 5)), SEQ_T._replace(tokens=TOK.at[0, 0].set(7))),
        "target.tokens holds ids in [1, 7] but the vocabulary has V=5 entries: expected ids in [0, 5)",
    ),
    Case(
        "loss.cross_entropy_label_too_large",
        lambda: losses.cross_entropy(jnp.zeros((2, 3)), jnp.array([0, 9])),
        "labels holds labels in [0, 9] but the model has k=3 classes: expected labels in [0, 3)",
    ),
    Case(
        "loss.cross_entropy_float_labels",
        lambda: losses.cross_entropy(jnp.zeros((2, 3)), jnp.array([0.0, 1.0])),
        "labels must hold integer class labels in [0, 3), got dtype float32",
    ),
    Case(
        "loss.cross_entropy_g_label_too_large",
        lambda: losses.cross_entropy_g(jnp.zeros((2, 3)), jnp.array([3, 0])),
        "labels holds labels in [0, 3] but the model has k=3 classes: expected labels in [0, 3)",
    ),
    Case(
        "loss.soft_cross_entropy_rows",
        lambda: losses.soft_cross_entropy(jnp.zeros((2, 3)), jnp.ones((2, 3))),
        "targets rows must be probability distributions (non-negative, summing to 1)",
    ),
    Case(
        "loss.soft_cross_entropy_g_shape",
        lambda: losses.soft_cross_entropy_g(jnp.zeros((2, 3)), jnp.ones((2, 4)) / 4),
        "targets has shape (2, 4): expected target distributions [n, 3]",
    ),
    Case(
        "loss.sft_id_too_large",
        lambda: losses.sft(jnp.zeros((2, 4, 5)), SEQ_T._replace(tokens=TOK.at[1, 0].set(5))),
        "target.tokens holds ids in [0, 5] but the vocabulary has V=5 entries: expected ids in [0, 5)",
    ),
    Case(
        "loss.sft_g_id_negative",
        lambda: losses.sft_g(jnp.zeros((2, 4, 5)), SEQ_T._replace(tokens=TOK.at[1, 0].set(-1))),
        "target.tokens holds ids in [-1, 3] but the vocabulary has V=5 entries: expected ids in [0, 5)",
    ),
    Case(
        "loss.dpo_odd_rows",
        lambda: losses.dpo(
            jnp.zeros((1, 4, 5)), losses.PreferenceTarget(TOK[:1], jnp.ones((1, 4)), jnp.zeros(1))
        ),
        "target has 1 rows: expected 2m rows, the m chosen responses followed by the m rejected ones",
    ),
    Case(
        "loss.dpo_g_id_too_large",
        lambda: losses.dpo_g(jnp.zeros((2, 4, 5)), PREF_T._replace(tokens=TOK + 5), beta=0.1),
        "target.tokens holds ids in [5, 9] but the vocabulary has V=5 entries: expected ids in [0, 5)",
    ),
    Case(
        "loss.slic_sequence_target",
        lambda: losses.slic(jnp.zeros((2, 4, 5)), SEQ_T),
        "target must be a ldjax.losses.PreferenceTarget(tokens, mask, ref_logp) with chosen rows first and rejected rows second, got SequenceTarget",
    ),
    Case(
        "loss.grpo_g_id_too_large",
        lambda: losses.grpo_g(jnp.zeros((2, 4, 5)), POLICY_T._replace(tokens=TOK + 1)),
        "target.tokens holds ids in [1, 5] but the vocabulary has V=5 entries: expected ids in [0, 5)",
    ),
    Case(
        "loss.smooth_labels_smoothing",
        lambda: losses.smooth_labels(Y, 3, 1.5),
        "smoothing must be in [0, 1], got 1.5",
    ),
    Case(
        "loss.dpo_fn_beta",
        lambda: losses.dpo_fn(beta=-1.0),
        "beta must be a positive finite number, got -1.0",
    ),
    Case("loss.simko_fn_top_k", lambda: losses.simko_fn(top_k=0), "top_k must be >= 1, got 0"),
    Case(
        "loss.group_advantages_group_size",
        lambda: losses.group_advantages(jnp.ones(5), 2),
        "group_size=2 must be >= 1 and divide the number of responses 5",
    ),
    # -- the optimizer kernels: preconditioner, hyper-parameters, optimizer states
    Case(
        "precond_ntk.negative",
        lambda: ldjax.preconditioned_ntk(
            mlp, P, X, preconditioner=with_leaf(jax.tree.map(jnp.ones_like, P), "w1", -jnp.ones((4, 5)))
        ),
        "preconditioner['w1'] holds 20 negative, NaN or inf value(s): expected a finite diagonal P >= 0",
    ),
    Case(
        "precond_ntk.nan",
        lambda: ldjax.preconditioned_ntk(
            mlp,
            P,
            X,
            preconditioner=with_leaf(jax.tree.map(jnp.ones_like, P), "w2", nan_at(jnp.ones((5, 3)))),
        ),
        "preconditioner['w2'] holds 1 negative, NaN or inf value(s): expected a finite diagonal P >= 0",
    ),
    Case(
        "precond_ntk.structure",
        lambda: ldjax.preconditioned_ntk(mlp, P, X, preconditioner={"w1": jnp.ones((4, 5))}),
        "preconditioner must be a pytree with the structure of params (one diagonal per leaf)",
    ),
    Case(
        "precond_ntk.leaf_shape",
        lambda: ldjax.preconditioned_ntk(
            mlp, P, X, preconditioner={"w1": jnp.ones((4, 5)), "w2": jnp.ones(3)}
        ),
        "preconditioner['w2'] has shape (3,) but the parameter has shape (5, 3): expected one diagonal entry per parameter",
    ),
    Case(
        "precond_ntk.nan_params",
        lambda: ldjax.preconditioned_ntk(
            mlp, with_leaf(P, "w1", nan_at(P["w1"])), X, preconditioner=jax.tree.map(jnp.ones_like, P)
        ),
        "params['w1'] contains 1" + FINITE,
    ),
    Case(
        "precond_ntk.int_leaf",
        lambda: ldjax.preconditioned_ntk(
            mlp, INT_LEAF, X, preconditioner=jax.tree.map(jnp.ones_like, INT_LEAF)
        ),
        "params['w2'] has dtype int32" + FLOAT_LEAF,
    ),
    Case(
        "precond_step.negative_learning_rate",
        lambda: precond(learning_rate=-0.01),
        "learning_rate must be a positive finite scalar, got -0.01",
    ),
    Case("precond_step.b1_above_one", lambda: precond(b1=1.5), "b1 must be in [0, 1), got 1.5"),
    Case("precond_step.b2_one", lambda: precond(b2=1.0), "b2 must be in [0, 1), got 1.0"),
    Case("precond_step.b1_negative", lambda: precond(b1=-0.1), "b1 must be in [0, 1), got -0.1"),
    Case("precond_step.eps_zero", lambda: precond(eps=0.0), "eps must be a positive finite scalar, got 0.0"),
    Case(
        "precond_step.eps_root_negative",
        lambda: precond(eps_root=-1e-8),
        "eps_root must be a finite number >= 0, got -1e-08",
    ),
    Case(
        "precond_step.momentum_one",
        lambda: precond(optimizer="momentum", momentum=1.0),
        "momentum must be in [0, 1), got 1.0",
    ),
    Case(
        "precond_step.decay_negative",
        lambda: precond(optimizer="rmsprop", decay=-0.1),
        "decay must be in [0, 1), got -0.1",
    ),
    Case(
        "precond_step.unknown_hyperparameter",
        lambda: precond(momentum=0.9),
        "hyperparameters ['momentum'] do not apply to optimizer='adam'; allowed: ['b1', 'b2', 'eps', 'eps_root']",
    ),
    Case(
        "precond_step.unknown_optimizer",
        lambda: precond(optimizer="adagrad"),
        "optimizer must be 'sgd', 'momentum', 'rmsprop' or 'adam', got 'adagrad'",
    ),
    Case(
        "precond_step.momentum_state_for_adam",
        lambda: precond(opt_state=MOMENTUM_STATE),
        "opt_state does not fit optax.adam (optimizer='adam'): its init(params) gives (ScaleByAdamState(count, mu, nu), EmptyState()) but opt_state is (TraceState(trace), EmptyState()), without the field(s) 'count', 'mu', 'nu'"
        + SAME_OPTIMIZER,
    ),
    Case(
        "precond_step.adam_state_for_momentum",
        lambda: precond(optimizer="momentum", opt_state=ADAM_STATE),
        "opt_state does not fit optax.sgd (optimizer='momentum'): its init(params) gives (TraceState(trace), EmptyState()) but opt_state is (ScaleByAdamState(count, mu, nu), EmptyState()), without the field(s) 'trace'"
        + SAME_OPTIMIZER,
    ),
    Case(
        "precond_step.nan_x_o",
        lambda: precond(x_o=nan_at(X)),
        "x_o contains 1" + FINITE,
    ),
    Case(
        "precond_step.memory",
        lambda: precond(memory_budget=100, method="jacobian"),
        "preconditioned_one_step(terms=True, method='jacobian') would need about 2.4 KiB (k [3, 2, 3, 3]: 216 B; per-example Jacobians of 5 examples: 2.1 KiB; a [3, 3, 3]: 108 B), more than the memory budget of 100 B (memory_budget=100). Cheaper: terms=False (predicted, actual and g need no kernel: one VJP and one JVP), ldjax.predict_log_prob_change for vocabulary-scale changes, or ldjax.empirical_ntk with trace=True or method='structured' for the kernel alone"
        + TRY_ANYWAY,
    ),
    Case(
        "optimizer_update.momentum_reads_adam_state",
        lambda: ldjax.optimizer_update(P, ADAM_STATE, optimizer="momentum", learning_rate=0.1),
        "opt_state has no 'trace' field: expected the state of optax.sgd for optimizer='momentum'",
    ),
    Case(
        "optimizer_update.adam_reads_momentum_state",
        lambda: ldjax.optimizer_update(P, MOMENTUM_STATE, optimizer="adam", learning_rate=0.1),
        "opt_state has no 'mu' field: expected the state of optax.adam for optimizer='adam'",
    ),
    Case(
        "optimizer_update.negative_learning_rate",
        lambda: ldjax.optimizer_update(P, ADAM_STATE, optimizer="adam", learning_rate=-0.1),
        "learning_rate must be a positive finite scalar, got -0.1",
    ),
    Case(
        "optimizer_update.unknown_optimizer",
        lambda: ldjax.optimizer_update(P, ADAM_STATE, optimizer="lion", learning_rate=0.1),
        "optimizer must be 'sgd', 'momentum', 'rmsprop' or 'adam', got 'lion'",
    ),
    # -- sharded
    Case(
        "sharded_ntk.nan_params",
        lambda: ldjax.sharded_ntk(mlp, with_leaf(P, "w1", nan_at(P["w1"])), X, mesh=mesh()),
        "params['w1'] contains 1" + FINITE,
    ),
    Case(
        "sharded_ntk.int_leaf",
        lambda: ldjax.sharded_ntk(mlp, INT_LEAF, X, mesh=mesh(), method="structured"),
        "params['w2'] has dtype int32" + FLOAT_LEAF,
    ),
    Case(
        "sharded_ntk.not_a_mesh",
        lambda: ldjax.sharded_ntk(mlp, P, X, mesh="probe"),
        "mesh must be a jax.sharding.Mesh, got str",
    ),
    Case(
        "sharded_ntk.unknown_axis",
        lambda: ldjax.sharded_ntk(mlp, P, X, mesh=mesh(), axis="rows"),
        "axis 'rows' is not an axis of the mesh: expected one of ('probe',)",
    ),
    Case(
        "sharded_ntk.memory",
        lambda: ldjax.sharded_ntk(mlp, P, X, mesh=mesh(), memory_budget=500, method="jacobian"),
        "sharded_ntk(method='jacobian') would need about 1.5 KiB (the kernel [3, 3, 3, 3]: 324 B; per-example Jacobians of 3 examples: 1.2 KiB), more than the memory budget of 500 B (memory_budget=500). Cheaper: trace=True (a kernel [n1, n2]), method='structured' (no Jacobians) or fewer examples per call (blocks of x1)"
        + TRY_ANYWAY,
    ),
    Case(
        "sharded_log_prob.nan_x_probe",
        lambda: ldjax.sharded_log_prob_change(
            mlp, P, nan_at(X), X[:2], Y[:2], mesh=mesh(), loss=CE, learning_rate=SGD
        ),
        "x_probe contains 1" + FINITE,
    ),
    Case(
        "sharded_log_prob.opt_state_without_optimizer",
        lambda: ldjax.sharded_log_prob_change(
            mlp, P, X, X[:2], Y[:2], mesh=mesh(), loss=CE, learning_rate=SGD, opt_state=ADAM_STATE
        ),
        NO_STATE,
    ),
    Case(
        "sharded_log_prob.label_too_large",
        lambda: ldjax.sharded_log_prob_change(
            mlp, P, X, X[:2], jnp.array([0, 3]), mesh=mesh(), loss=CE, learning_rate=SGD
        ),
        "y_u holds labels in [0, 3] but the model has k=3 classes: expected labels in [0, 3)",
    ),
]


# ---------------------------------------------------------------------------------------------- command line


@dataclasses.dataclass(frozen=True)
class Outcome:
    rc: Any
    out: str
    err: str


def _captured(main: Callable[[list[str]], int], argv: tuple[str, ...]) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as exit_:
            rc = exit_.code
    return Outcome(rc, out.getvalue(), err.getvalue())


def ldjax_cli(*argv: str) -> Outcome:
    """``ldjax ARGV`` in this process, with the fake experiments (see :func:`fake_registry`)."""
    from ldjax._src.app import cli

    return _captured(cli.main, argv)


def experiment_cli(*argv: str) -> Outcome:
    """``python -m ldjax.experiments.<fake> ARGV`` in this process."""
    return _captured(fake_experiments.main, argv)


@contextlib.contextmanager
def environment(**variables: str | None):
    """Set (or, with ``None``, unset) environment variables for the block."""
    saved = {key: os.environ.get(key) for key in variables}
    try:
        for key, value in variables.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        yield
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


@contextlib.contextmanager
def cwd(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _read_only_reason() -> str:
    try:
        os.mkdir("/sys/ldjax-results")
    except OSError as err:
        return err.strerror
    os.rmdir("/sys/ldjax-results")
    return "(writable)"


READ_ONLY = _read_only_reason()
RUN = ("reproduce", "--no-progress", "--no-report")
PROG = "python -m ldjax.experiments.fake_experiments"
CLI_CASES = [
    Case(
        "cli.unknown_experiment",
        lambda d: ldjax_cli(*RUN, "nope", "--out", f"{d}/out"),
        "ldjax: error: unknown experiment 'nope': expected one of ok, nodata, broken, files, corrupt, gated (older names: okay = ok)",
    ),
    Case(
        "cli.out_is_a_file",
        lambda d: ldjax_cli(*RUN, "ok", "--out", f"{d}/afile"),
        "ldjax: error: --out {d}/afile is a file, not a directory",
    ),
    Case(
        "cli.out_under_a_file",
        lambda d: ldjax_cli(*RUN, "ok", "--out", f"{d}/afile/results"),
        "ldjax: error: --out {d}/afile/results is under {d}/afile, which is a file, not a directory",
    ),
    Case(
        "cli.out_read_only",
        lambda d: ldjax_cli(*RUN, "ok", "--out", "/sys/ldjax-results"),
        f"ldjax: error: --out /sys/ldjax-results is not writable: {READ_ONLY}",
    ),
    Case(
        "cli.out_empty",
        lambda d: ldjax_cli(*RUN, "ok", "--out", ""),
        "ldjax: error: --out is empty: give a directory, e.g. --out results",
    ),
    Case(
        "cli.data_dir_missing",
        lambda d: ldjax_cli(*RUN, "ok", "--out", f"{d}/out", "--data-dir", "/nonexistent"),
        "ldjax: error: --data-dir /nonexistent does not exist: give the directory that holds the data files, or leave it out to use $LDJAX_DATA_DIR or the cache",
    ),
    Case(
        "cli.data_dir_is_a_file",
        lambda d: ldjax_cli(*RUN, "ok", "--out", f"{d}/out", "--data-dir", f"{d}/afile"),
        "ldjax: error: --data-dir {d}/afile is not a directory",
    ),
    Case(
        "cli.data_dir_empty",
        lambda d: ldjax_cli(*RUN, "ok", "--out", f"{d}/out", "--data-dir", ""),
        "ldjax: error: --data-dir is empty: give the directory that holds the data files, or leave it out",
    ),
    Case(
        "cli.unknown_flag",
        lambda d: ldjax_cli(*RUN, "ok", "--bogus"),
        "ldjax: error: unrecognized arguments: --bogus (see ldjax --help)",
    ),
    Case(
        "cli.quick_and_full",
        lambda d: ldjax_cli(*RUN, "--quick", "--full"),
        "ldjax reproduce: error: argument --full: not allowed with argument --quick (see ldjax reproduce --help)",
    ),
    Case(
        "cli.no_command",
        lambda d: ldjax_cli(),
        "ldjax: error: the following arguments are required: command (see ldjax --help)",
    ),
    Case(
        "cli.corrupt_data_file",
        lambda d: ldjax_cli(*RUN, "corrupt", "--out", f"{d}/out"),
        "ldjax: error: corrupt: /data/train-images-idx3-ubyte.gz: IDX header claims -5 images",
    ),
    Case(
        "cli.report_out_missing",
        lambda d: ldjax_cli("report", "--out", f"{d}/none"),
        "ldjax: error: --out {d}/none does not exist: run `ldjax reproduce --out {d}/none` first",
    ),
    Case(
        "cli.report_out_is_a_file",
        lambda d: ldjax_cli("report", "--out", f"{d}/afile"),
        "ldjax: error: --out {d}/afile is a file, not a directory",
    ),
    Case(
        "experiment.out_empty",
        lambda d: experiment_cli("--out", "", "--no-progress"),
        "python -m ldjax.experiments.fake_experiments: error: --out is empty: give a directory, e.g. --out results",
    ),
    Case(
        "experiment.out_is_a_file",
        lambda d: experiment_cli("--out", f"{d}/afile", "--no-progress"),
        "python -m ldjax.experiments.fake_experiments: error: --out {d}/afile is a file, not a directory",
    ),
    Case(
        "experiment.out_is_the_current_directory",
        lambda d: _in(d, experiment_cli, "--out", ".", "--no-progress"),
        "python -m ldjax.experiments.fake_experiments: error: --out {d} is the current directory or holds it"
        + REPLACED
        + ", so give a folder of its own, e.g. --out results/NAME",
    ),
    Case(
        "experiment.out_holds_other_files",
        lambda d: experiment_cli("--out", f"{d}/notes", "--no-progress"),
        "python -m ldjax.experiments.fake_experiments: error: --out {d}/notes holds files that ldjax did not write (notes.txt)"
        + REPLACED
        + ", so give an empty or new folder (or move them away)",
    ),
    Case(
        "experiment.data_dir_missing",
        lambda d: experiment_cli("--out", f"{d}/out", "--data-dir", "/nonexistent"),
        "python -m ldjax.experiments.fake_experiments: error: --data-dir /nonexistent does not exist: give the directory that holds the data files, or leave it out to use $LDJAX_DATA_DIR or the cache",
    ),
    Case(
        "experiment.bad_int_flag",
        lambda d: experiment_cli("--out", f"{d}/out", "--size", "abc"),
        "python -m ldjax.experiments.fake_experiments: error: argument --size: invalid int value: 'abc' (see python -m ldjax.experiments.fake_experiments --help)",
    ),
    Case(
        "experiment.bad_bool_flag",
        lambda d: experiment_cli("--out", f"{d}/out", "--flag", "maybe"),
        "python -m ldjax.experiments.fake_experiments: error: argument --flag: expected true/false, got 'maybe' (see python -m ldjax.experiments.fake_experiments --help)",
    ),
]


def _in(d: Path, main: Callable[..., Outcome], *argv: str) -> Outcome:
    with cwd(d):
        return main(*argv)


def prepare(d: Path) -> Path:
    """The folder a command-line case runs in: a file ``afile``, a folder ``notes`` with a note in it."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "afile").write_text("not a directory")
    (d / "notes").mkdir(exist_ok=True)
    (d / "notes" / "notes.txt").write_text("mine")
    return d


# ---------------------------------------------------------------------------------------------- scenarios


def _results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def corrupt_status_is_reported_and_rebuilt(d: Path) -> None:
    out = d / "out"
    out.mkdir()
    (out / "status.json").write_text('{"ok": {"state": "comp')
    got = ldjax_cli(*RUN, "ok", "--out", str(out))
    assert got.rc == 0, got
    assert got.err.startswith(f"ldjax: warning: {out}/status.json is corrupt (JSONDecodeError: "), got.err
    assert json.loads((out / "status.json").read_text())["ok"]["state"] == "complete"


def corrupt_results_are_reported_and_rerun(d: Path) -> None:
    out = d / "out"
    assert ldjax_cli(*RUN, "ok", "--out", str(out)).rc == 0
    (out / "ok" / "results.json").write_bytes(b"\x00\xff garbage")
    got = ldjax_cli(*RUN, "ok", "--out", str(out))
    assert got.rc == 0 and f"[rerun] ok: {out}/ok/results.json is corrupt (UnicodeDecodeError" in got.out, got
    assert fake_experiments.CALLS["ok"] == 2 and _results(out / "ok")["complete"]


def report_shows_corrupt_and_malformed_results(d: Path) -> None:
    out = d / "out"
    assert ldjax_cli(*RUN, "ok", "--out", str(out)).rc == 0
    (out / "ok" / "results.json").write_text("{")
    (out / "nodata").mkdir()
    (out / "nodata" / "results.json").write_text(json.dumps({"complete": True, "fidelity": 3, "figures": []}))
    got = ldjax_cli("report", "--out", str(out))
    assert got.rc == 0, got
    page = (out / "report.html").read_text()
    assert f"unreadable: {out}/ok/results.json is corrupt (JSONDecodeError" in page
    assert f"unreadable: {out}/nodata/results.json is malformed (TypeError" in page


def report_embeds_no_file_outside_the_results(d: Path) -> None:
    out = d / "out"
    assert ldjax_cli(*RUN, "ok", "--out", str(out)).rc == 0
    secret = d / "secret.png"
    secret.write_bytes(b"SECRET-CONTENT")
    (out / "ok" / "link.png").symlink_to(secret)
    record = _results(out / "ok")
    record["figures"] = [f"../../{secret.name}", str(secret), "link.png", "values.png"]
    (out / "ok" / "results.json").write_text(json.dumps(record))
    assert ldjax_cli("report", "--out", str(out)).rc == 0
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 1  # values.png only
    assert "U0VDUkVU" not in page  # base64 of b"SECRET"
    assert page.count("not shown: not a .png file of this folder") == 3


def changed_data_file_is_rerun(d: Path) -> None:
    out, data = d / "out", d / "data"
    data.mkdir()
    (data / "data.bin").write_bytes(bytes(range(5)))
    args = (*RUN, "files", "--out", str(out), "--data-dir", str(data))
    assert ldjax_cli(*args).rc == 0
    assert "[skip] files" in ldjax_cli(*args).out
    (data / "data.bin").write_bytes(bytes(range(1, 6)))  # same size, other bytes
    got = ldjax_cli(*args)
    assert (
        got.rc == 0 and f"[rerun] files: its data file {data}/data.bin changed (SHA-256 differs)" in got.out
    ), got
    assert fake_experiments.CALLS["files"] == 2
    assert _results(out / "files")["data_files"][0]["bytes"] == 5


def other_data_dir_is_rerun(d: Path) -> None:
    out = d / "out"
    for name in ("a", "b"):
        (d / name).mkdir()
        (d / name / "data.bin").write_bytes(b"same")
    assert ldjax_cli(*RUN, "files", "--out", str(out), "--data-dir", str(d / "a")).rc == 0
    got = ldjax_cli(*RUN, "files", "--out", str(out), "--data-dir", str(d / "b"))
    assert "[rerun] files: the data directory differs" in got.out and fake_experiments.CALLS["files"] == 2, (
        got
    )


def data_appearing_after_a_fallback_is_rerun(d: Path) -> None:
    out, cache = d / "out", d / "cache"
    with environment(LDJAX_DATA_DIR=None, LDJAX_CACHE_DIR=str(cache)):
        assert ldjax_cli(*RUN, "files", "--out", str(out)).rc == 0
        assert _results(out / "files")["dataset"] == "built-in values (no data.bin)"
        assert "[skip] files" in ldjax_cli(*RUN, "files", "--out", str(out)).out
        (cache / "fake").mkdir(parents=True)
        (cache / "fake" / "data.bin").write_bytes(b"real")
        got = ldjax_cli(*RUN, "files", "--out", str(out))
    assert "[rerun] files: the data directories hold other files than when it ran" in got.out, got
    assert _results(out / "files")["dataset"] == "data.bin (4 bytes)"


def result_of_an_older_version_is_rerun(d: Path) -> None:
    out = d / "out"
    assert ldjax_cli(*RUN, "ok", "--out", str(out)).rc == 0
    record = _results(out / "ok")
    record.pop("request", None)
    (out / "ok" / "results.json").write_text(json.dumps(record))
    got = ldjax_cli(*RUN, "ok", "--out", str(out))
    assert (
        "[rerun] ok: the saved run does not record its data" in got.out and fake_experiments.CALLS["ok"] == 2
    )


def killed_force_run_leaves_the_old_results(d: Path) -> None:
    out = d / "out"
    assert ldjax_cli(*RUN, "ok", "--out", str(out)).rc == 0
    before = {p.name: p.read_bytes() for p in (out / "ok").iterdir()}
    original = json.dumps

    def killed(obj, *args, **kwargs):  # the run is killed while it writes results.json, after its figures
        if isinstance(obj, dict) and "fidelity" in obj:
            raise KeyboardInterrupt
        return original(obj, *args, **kwargs)

    json.dumps = killed
    try:
        with contextlib.suppress(KeyboardInterrupt):
            ldjax_cli(*RUN, "ok", "--out", str(out), "--full", "--force")
    finally:
        json.dumps = original
    assert {p.name: p.read_bytes() for p in (out / "ok").iterdir()} == before
    assert not [p.name for p in out.iterdir() if p.name.startswith(".ok.") and not p.name.endswith(".lock")]


def outputs_follow_the_umask(d: Path) -> None:
    out = d / "out"
    old = os.umask(0o027)
    try:
        assert ldjax_cli("reproduce", "--no-progress", "ok", "--out", str(out)).rc == 0
    finally:
        os.umask(old)
    modes = {
        p.name: p.stat().st_mode & 0o777 for p in [out / "ok", *(out / "ok").iterdir(), out / "status.json"]
    }
    modes["report.html"] = (out / "report.html").stat().st_mode & 0o777
    assert modes == {
        "ok": 0o750,
        "results.json": 0o640,
        "values.png": 0o640,
        "values.pdf": 0o640,
        "status.json": 0o640,
        "report.html": 0o640,
    }, modes


def concurrent_runs_into_one_out(d: Path) -> None:
    """Two ``ldjax reproduce`` processes into one ``--out``: the second waits for the experiment the first is
    writing, then reuses it; both status entries survive."""
    out, gate = d / "out", d / "gate"
    env = {
        **os.environ,
        "LDJAX_TEST_GATE": str(gate),
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    command = [sys.executable, str(HERE / "fake_experiments.py"), *RUN, "--out", str(out)]
    first = subprocess.Popen(
        [*command, "gated"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    log = Path(f"{gate}.log")
    deadline = time.monotonic() + 120
    while not log.exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    second = subprocess.Popen(
        [*command, "ok", "gated"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    waiting = ""
    while "[wait] gated" not in waiting and time.monotonic() < deadline:
        line = second.stdout.readline()
        if not line:
            break
        waiting += line
    gate.touch()
    outs = [first.communicate(timeout=120), second.communicate(timeout=120)]
    assert first.returncode == second.returncode == 0, outs
    assert (
        f"[wait] gated: another ldjax run (pid {first.pid}) is writing {out}/gated; waiting for it" in waiting
    )
    assert "[skip] gated" in outs[1][0], outs
    assert len(log.read_text().split()) == 1  # the gated experiment ran once
    status = json.loads((out / "status.json").read_text())
    assert sorted(status) == ["gated", "ok"] and all(e["state"] == "complete" for e in status.values())


SCENARIOS = [
    Case("scenario.corrupt_status_json", corrupt_status_is_reported_and_rebuilt, "reported, rebuilt"),
    Case("scenario.corrupt_results_json", corrupt_results_are_reported_and_rerun, "reported, rerun"),
    Case(
        "scenario.report_corrupt_results", report_shows_corrupt_and_malformed_results, "shown in the report"
    ),
    Case("scenario.report_figure_outside", report_embeds_no_file_outside_the_results, "not embedded"),
    Case("scenario.stale_data_file", changed_data_file_is_rerun, "rerun"),
    Case("scenario.stale_data_dir", other_data_dir_is_rerun, "rerun"),
    Case("scenario.stale_fallback", data_appearing_after_a_fallback_is_rerun, "rerun"),
    Case("scenario.stale_older_version", result_of_an_older_version_is_rerun, "rerun"),
    Case("scenario.killed_force", killed_force_run_leaves_the_old_results, "old results intact"),
    Case("scenario.umask", outputs_follow_the_umask, "modes from the umask"),
    Case("scenario.concurrent_runs", concurrent_runs_into_one_out, "one run, both entries"),
]


# ---------------------------------------------------------------------------------------------- the tests


@pytest.fixture
def fake_registry(monkeypatch):
    fake_experiments.install(monkeypatch.setattr, fake_experiments.SPECS + fake_experiments.EXTRA)


@pytest.mark.parametrize("case", API_CASES, ids=lambda case: case.id)
def test_api_refuses_a_bad_input_with_its_message(case):
    with pytest.raises(case.error) as info:
        case.call()
    assert str(info.value) == case.message


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda case: case.id)
def test_command_line_mistake_is_one_line_and_exit_code_2(case, fake_registry, tmp_path):
    d = prepare(tmp_path)
    got = case.call(d)
    assert (got.rc, got.err.splitlines()) == (2, [case.message.format(d=d)]), got


@pytest.mark.parametrize("case", SCENARIOS, ids=lambda case: case.id)
def test_results_stay_consistent(case, fake_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("LDJAX_CACHE_DIR", str(tmp_path / "cache"))
    case.call(prepare(tmp_path / "case"))


def test_check_finite_false_skips_the_value_checks_and_debug_shows_the_traceback(fake_registry, tmp_path):
    bad = with_leaf(P, "w1", nan_at(P["w1"]))
    assert bool(jnp.isnan(ldjax.empirical_ntk(mlp, bad, X, check_finite=False)).any())
    assert bool(jnp.isnan(step(params=bad, check_finite=False, terms=False).predicted).any())
    from ldjax._src.experiments import storage

    with pytest.raises(storage.UsageError, match="--out is empty"):
        ldjax_cli("--debug", *RUN, "ok", "--out", "")


def test_a_declared_sequence_model_and_token_inputs_pass_the_batch_axis_check():
    declared = ldjax.as_apply_fn(lambda p, x: seq(p, x.astype(int)), sequence_output=True)
    assert ldjax.empirical_ntk(declared, PS, TOK * 1.0, trace=True).shape == (2, 2)
    assert ldjax.empirical_ntk(seq, PS, TOK, trace=True).shape == (2, 2)


def test_the_default_budget_refuses_the_terms_of_a_language_model_before_allocating_them():
    """The issue's case, ``one_step`` with ``terms=True`` on an LM with V=2000, T=32, with 16 sequences (a 3.8 TiB
    kernel: more than half of any machine's memory)."""
    from ldjax._src.checks import MemoryBudgetError

    k = jax.random.split(jax.random.key(1), 2)
    big = {"emb": jax.random.normal(k[0], (2000, 8)), "out": jax.random.normal(k[1], (8, 2000))}
    tokens = jnp.zeros((16, 32), int)
    target = losses.SequenceTarget(tokens, jnp.ones((16, 32)))
    with pytest.raises(MemoryBudgetError) as info:
        ldjax.one_step(seq, big, tokens, tokens, target, loss=losses.sft, learning_rate=SGD)
    message = str(info.value)
    assert message.startswith("one_step(terms=True, method='auto') would need about 3.8 TiB (k [16, 16, 32, ")
    assert "more than the memory budget of" in message and "Cheaper: terms=False" in message
    with pytest.raises(
        MemoryBudgetError, match=r"^empirical_ntk\(method='structured'\) would need about 3.8 TiB"
    ):
        ldjax.empirical_ntk(seq, big, tokens, method="structured")
    cheaper = ldjax.one_step(
        seq, big, tokens, tokens, target, loss=losses.sft, learning_rate=SGD, terms=False
    )
    assert cheaper.predicted.shape == (16, 32, 2000) and cheaper.k is None


def test_custom_vjp_models_work_with_the_reverse_mode_methods():
    reference = ldjax.empirical_ntk(lambda p, x: jnp.sin(x @ p["w1"]) @ p["w2"], P, X, trace=True)
    for method in ("jacobian", "structured"):
        np.testing.assert_allclose(
            ldjax.empirical_ntk(custom, P, X, method=method, trace=True), reference, rtol=1e-5
        )


# ---------------------------------------------------------------------------------------------- counting


def classify(case: Case, kind: str, d: Path) -> tuple[str, str]:
    """``(verdict, detail)`` of one case on the checkout on ``PYTHONPATH``: clean / generic / silent.

    Clean: an API case raised a ``ValueError`` from ldjax's own code that does not quote another error; a
    command-line case exited with code 2 without a traceback; a scenario ended as it should.
    """
    try:
        got = case.call(d) if kind != "api" else case.call()
    except AssertionError as err:
        return "silent", f"wrong outcome: {str(err)[:120]}"
    except Exception as err:  # noqa: BLE001
        frames = traceback.extract_tb(err.__traceback__)
        from_ldjax = bool(frames) and "/ldjax/" in frames[-1].filename
        wraps = err.__cause__ is not None and str(err.__cause__) in str(err)  # another error's text inside
        if kind == "api" and isinstance(err, ValueError) and from_ldjax and not wraps:
            return "clean", f"{type(err).__name__}: {str(err)[:120]}"
        return "generic", f"{type(err).__name__}: {str(err)[:120]}"
    if kind == "cli":
        if got.rc == 2 and "Traceback" not in got.err:
            return "clean", got.err.strip().splitlines()[-1][:120]
        if "Traceback" in got.err:
            return "generic", f"rc {got.rc}, traceback: {got.err.strip().splitlines()[-1][:100]}"
        return "silent", f"rc {got.rc}: {got.err.strip()[:100]}"
    if kind == "scenario":
        return "clean", case.message
    return "silent", f"returned {type(got).__name__}"


def count() -> int:
    import tempfile

    fake_experiments.install(setattr, fake_experiments.SPECS + fake_experiments.EXTRA)
    totals: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, cases in (("api", API_CASES), ("cli", CLI_CASES), ("scenario", SCENARIOS)):
            for index, case in enumerate(cases):
                for key in fake_experiments.CALLS:
                    fake_experiments.CALLS[key] = 0
                d = prepare(Path(tmp) / f"{kind}{index}")
                with environment(LDJAX_CACHE_DIR=str(d / "cache")):
                    verdict, detail = classify(case, kind, d)
                totals[verdict] = totals.get(verdict, 0) + 1
                print(f"{verdict:8s} {case.id}: {detail}", flush=True)
    tried = sum(totals.values())
    print(f"tried {tried}: " + ", ".join(f"{totals.get(v, 0)} {v}" for v in ("clean", "generic", "silent")))
    return 0


if __name__ == "__main__":
    raise SystemExit(count())
