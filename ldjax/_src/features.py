r"""How one update moves an intermediate feature: kernel × direction × energy (Ren et al., ICLR 2023).

Split the model into a feature map and a head, :math:`z = g(h(x))`, e.g. the penultimate layer
:math:`h` of a classifier and its linear head :math:`g`. One plain-SGD step of size η on the batch
:math:`\{(x_u, y_u)\}` moves the feature of any example :math:`x_o` by

.. math:: h(x_o)^{t+1} - h(x_o)^t = -\eta \sum_u
          \underbrace{K_h(x_o, x_u)}_{\text{kernel}}\;
          \underbrace{\big(\nabla_h z(x_u)\big)^\top}_{\text{direction}}\;
          \underbrace{G(x_u)}_{\text{energy}} + O(\eta^2),

with the **feature kernel** :math:`K_h(x_o, x_u) = \nabla_\theta h(x_o)\, \nabla_\theta h(x_u)^\top`
(``[f, f]``; it changes slowly), the **direction** :math:`\nabla_h z(x_u)` set by the head (``[k, f]``;
for a linear head :math:`z = V h + b` it is :math:`V`) and the **energy** :math:`G = \partial L/\partial z`
(for the mean cross-entropy :math:`(\pi(x_u) - e_{y_u})/n_u`, the authors' :math:`p - e_y` with the
:math:`1/N` of their sum). The head's own parameters do not move :math:`h`, so when they are disjoint from
the feature map's (the usual backbone/head split) the sum is exact to first order. "Head probing" before
fine-tuning lowers the energy the features receive; :func:`energy` measures it on a data set.

How to name the feature: give the model as two one-example functions over the SAME ``params``,
``feature_fn(params, x) -> h`` and ``head_fn(params, h) -> z`` (so ``head_fn(params, feature_fn(params,
x))`` is the whole model). For a flax NNX module with, say, ``self.backbone`` and ``self.head``::

    feature_fn, params = ldjax.from_nnx(model, method=lambda m, x: m.backbone(x))
    head_fn, _ = ldjax.from_nnx(model, method=lambda m, h: m.head(h))

(any method or intermediate works: ``lambda m, x: m.features(x)``); for linen,
``ldjax.from_linen(module, variables, method=...)`` takes linen's own ``method=``.

:func:`feature_step` returns the predicted change (:math:`J_h(x_o)\, u`, one JVP of the FEATURE map along
the optimizer's actual update ``u`` from :func:`~ldjax._src.first_order.batch_update`; for SGD exactly the
sum above), the actual change after that real optimizer step, and the three terms;
:func:`feature_decomposition` assembles the sum from the terms.
"""

import math
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import Int
from jaxtyping import PyTree
from jaxtyping import Shaped

from ldjax._src import checks
from ldjax._src.adapters import ApplyFunction
from ldjax._src.first_order import batch_update
from ldjax._src.first_order import output_change
from ldjax._src.losses._base import softmax_minus_one_hot
from ldjax._src.ntk import DEFAULT_METHOD
from ldjax._src.ntk import NtkMethod
from ldjax._src.ntk import batched
from ldjax._src.ntk_fn import empirical_ntk
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import LearningRate
from ldjax._src.typing import LossFn
from ldjax._src.typing import Params
from ldjax._src.typing import Precision

FeatureFn = Callable[[Params, Array], Array]
"""``feature_fn(params, x) -> h``: the feature ``[*f]`` of ONE example."""
HeadFn = Callable[[Params, Array], Array]
"""``head_fn(params, h) -> z``: the logits ``[*o]`` of ONE example's feature."""


class FeatureStepResult(NamedTuple):
    """Result of :func:`feature_step`. ``*f`` is one example's feature, ``*o`` its logits.

    Attributes:
      predicted: the first-order change of the feature at every ``x_o``, :math:`J_h(x_o)\\, u` for the
        optimizer's update ``u``, ``[n_o, *f]``; for plain SGD :math:`-\\eta \\sum_u K_h\\, D^\\top G`.
      actual: the feature after a real optimizer update minus before, ``[n_o, *f]``.
      residual: ``actual − predicted``; O(η²).
      h_o: the features at ``x_o`` before the update, ``[n_o, *f]``.
      kernel: the feature kernel :math:`K_h(x_o, x_u) = \\nabla_\\theta h(x_o) \\nabla_\\theta h(x_u)^\\top`,
        ``[n_o, n_u, *f, *f]`` (``None`` unless ``terms``).
      direction: :math:`D = \\nabla_h z` at ``x_u``, ``[n_u, *o, *f]`` (``None`` unless ``terms``).
      energy: :math:`G = \\partial L/\\partial z` at ``x_u``, ``[n_u, *o]`` (carries the loss's 1/n: for the
        mean cross-entropy :math:`(\\pi - e_y)/n_u`).
      loss: the loss at ``x_u`` before the update.
    """

    predicted: Array
    actual: Array
    residual: Array
    h_o: Array
    kernel: Array | None
    direction: Array | None
    energy: Array
    loss: Array


class Energy(NamedTuple):
    """Result of :func:`energy`. ``*b`` are the example (and position) axes.

    Attributes:
      mean: the energy of the data set, the mean of :math:`\\|\\pi - e_y\\|_2` (the authors' average initial
        energy when taken at the start of fine-tuning).
      mean_gap: the mean of :math:`1 - \\pi_y`.
      norm: :math:`\\|\\pi - e_y\\|_2` per example, ``[*b]``.
      gap: :math:`1 - \\pi_y` per example, ``[*b]``.
    """

    mean: Array
    mean_gap: Array
    norm: Array
    gap: Array


def feature_step(
    feature_fn: FeatureFn,
    head_fn: HeadFn,
    params: Params,
    x_o: PyTree[Shaped[ArrayLike, " n_o ..."]],
    x_u: PyTree[Shaped[ArrayLike, " n_u ..."]],
    y_u: Any,
    *,
    loss: LossFn,
    learning_rate: LearningRate | None = None,
    optimizer: optax.GradientTransformation | None = None,
    opt_state: Any = None,
    terms: bool = True,
    method: NtkMethod = DEFAULT_METHOD,
    precision: Precision = "highest",
    check_finite: bool = True,
    memory_budget: float | None = None,
) -> FeatureStepResult:
    r"""Predicted and actual change of the feature ``h`` on ``x_o`` after ONE update on ``(x_u, y_u)``.

    .. math:: \Delta h(x_o) = -\eta \textstyle\sum_u K_h(x_o, x_u)\, \nabla_h z(x_u)^\top\, G(x_u) + O(\eta^2)

    The model is ``head_fn(params, feature_fn(params, x))``; both functions take ONE example and the whole
    ``params`` (see the module documentation for flax). The update is the optimizer's real one (one VJP at
    ``x_u``, one ``optimizer.update``); ``predicted`` is the JVP of the feature map at ``x_o`` along it,
    which for plain SGD (``optimizer=None``) equals :func:`feature_decomposition` of the returned terms
    when the head's parameters do not enter ``feature_fn``. ``actual`` comes from applying the update.

    Args:
      feature_fn: ``feature_fn(params, x) -> [*f]`` for one example.
      head_fn: ``head_fn(params, h) -> [*o]`` logits for one example's feature.
      params: pytree of parameters of both.
      x_o: observed examples ``[n_o, *d]``.
      x_u: the update batch ``[n_u, *d]``.
      y_u: targets for ``loss``.
      loss: ``loss(logits[n_u, *o], y_u) -> scalar``, e.g. :func:`ldjax.losses.cross_entropy`.
      learning_rate: η for plain SGD (required when ``optimizer`` is ``None``, else ``None``).
      optimizer: any ``optax.GradientTransformation`` (Adam, momentum, a schedule ...).
      opt_state: the optimizer's state; default ``optimizer.init(params)``.
      terms: also return ``kernel`` and ``direction`` (the kernel needs features ``[f]`` or ``[T, f]``).
      method: how the kernel is computed (see :func:`ldjax.empirical_ntk`).
      precision: matmul precision (default ``"highest"``).
      check_finite: refuse NaN or inf in ``params``, the inputs, float targets and ``opt_state``.
      memory_budget: bytes the kernel and direction terms may take (as in :func:`ldjax.one_step`); above it
        the call is refused before anything is allocated. Default: half of the device's memory.

    Returns:
      :class:`FeatureStepResult`.

    Example:
      >>> import jax, jax.numpy as jnp, ldjax
      >>> feature_fn = lambda p, x: jnp.tanh(x @ p["w"])      # the penultimate layer h, [8]
      >>> head_fn = lambda p, h: h @ p["v"]                   # a linear head, [3] logits
      >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
      >>> p = {"w": jax.random.normal(k1, (5, 8)), "v": jax.random.normal(k2, (8, 3))}
      >>> x = jax.random.normal(k3, (6, 5))
      >>> r = ldjax.feature_step(feature_fn, head_fn, p, x, x[:2], jnp.array([0, 2]),
      ...                        loss=ldjax.losses.cross_entropy, learning_rate=1e-3)
      >>> r.predicted.shape, r.kernel.shape, r.direction.shape, r.energy.shape
      ((6, 8), (6, 2, 8, 8), (2, 3, 8), (2, 3))
      >>> terms = ldjax.feature_decomposition(r.kernel, r.direction, r.energy, 1e-3)
      >>> bool(jnp.allclose(terms, r.predicted, atol=1e-7))
      True
      >>> bool(jnp.abs(r.residual).max() < 1e-3 * jnp.abs(r.predicted).max())  # the step's O(η²) remainder
      True
    """
    step = feature_step_fn(
        feature_fn, head_fn, loss, optimizer=optimizer, terms=terms, method=method, precision=precision,
        check_finite=check_finite, memory_budget=memory_budget,
    )  # fmt: skip
    return step(params, x_o, x_u, y_u, learning_rate=learning_rate, opt_state=opt_state)


def feature_step_fn(
    feature_fn: FeatureFn,
    head_fn: HeadFn,
    loss: LossFn,
    *,
    optimizer: optax.GradientTransformation | None = None,
    terms: bool = True,
    method: NtkMethod = DEFAULT_METHOD,
    precision: Precision = "highest",
    check_finite: bool = True,
    memory_budget: float | None = None,
) -> Callable[..., FeatureStepResult]:
    r"""A compiled :func:`feature_step` for one model, loss and optimizer, to hold and call many times.

    The returned ``step(params, x_o, x_u, y_u, *, learning_rate=None, opt_state=None)`` validates its
    arguments outside ``jax.jit`` (shapes once per shape signature) and runs one jitted program; a new
    learning rate does not recompile.

    Args:
      feature_fn, head_fn, loss, optimizer, terms, method, precision, check_finite, memory_budget: as in
        :func:`feature_step`.

    Returns:
      ``step(params, x_o, x_u, y_u, *, learning_rate=None, opt_state=None) -> FeatureStepResult``.

    Example:
      >>> import jax, jax.numpy as jnp, optax, ldjax
      >>> feature_fn = lambda p, x: jnp.tanh(x @ p["w"])
      >>> head_fn = lambda p, h: h @ p["v"]
      >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
      >>> p = {"w": jax.random.normal(k1, (5, 8)), "v": jax.random.normal(k2, (8, 3))}
      >>> x = jax.random.normal(k3, (6, 5))
      >>> step = ldjax.feature_step_fn(feature_fn, head_fn, ldjax.losses.cross_entropy,
      ...                              optimizer=optax.adam(1e-3), terms=False)
      >>> r = step(p, x, x[:2], jnp.array([0, 2]))
      >>> r.predicted.shape, r.kernel is None, bool(jnp.abs(r.residual).max() < 1e-5)
      ((6, 8), True, True)
    """
    checks.precision_scope(precision)  # an unknown precision fails here, not at the first call
    checks.check_optimizer(optimizer, None)
    if memory_budget is not None:
        checks.check_positive_budget(memory_budget)
    apply_fn = _compose(feature_fn, head_fn)
    known_shapes: dict = {}
    run = jax.jit(
        _feature_step_program(feature_fn, head_fn, apply_fn, loss, optimizer, terms, method, precision)
    )

    def step(params, x_o, x_u, y_u, *, learning_rate=None, opt_state=None) -> FeatureStepResult:
        """Predicted and actual Δh on ``x_o`` after one update on ``(x_u, y_u)`` (see :func:`feature_step`)."""
        key = ("feature", checks.example_shape(x_u), jax.tree.structure(params))
        if key not in known_shapes:
            checks.check_batch(x_u, "x_u")
            known_shapes[key] = checks.check_feature_model(feature_fn, head_fn, params, x_u, terms)
        out_shape = checks.validate_step(
            apply_fn, params, x_o, x_u, y_u, loss, learning_rate, optimizer, opt_state=opt_state,
            known_shapes=known_shapes, check_finite=check_finite,
        )  # fmt: skip
        if terms:
            checks.check_feature_terms_memory(
                params, x_o, x_u, known_shapes[key], out_shape, method, memory_budget
            )
        rate = 0.0 if learning_rate is None else learning_rate
        with checks.forward_mode("feature_step"):
            return run(params, x_o, x_u, y_u, opt_state, rate)

    return step


def _feature_step_program(feature_fn, head_fn, apply_fn, loss, optimizer, terms, method, precision):
    """The computation of :func:`feature_step` after validation (``optimizer=None``: SGD at ``rate``)."""

    def run(params, x_o, x_u, y_u, opt_state, rate):
        opt = optax.sgd(rate) if optimizer is None else optimizer
        with checks.precision_scope(precision):
            update = batch_update(apply_fn, params, x_u, y_u, loss, opt, opt_state)
            predicted, h_o = output_change(feature_fn, params, update.updates, x_o)
            actual = batched(feature_fn)(optax.apply_updates(params, update.updates), x_o) - h_o
            kernel = direction = None
            if terms:
                kernel = empirical_ntk(feature_fn, params, x_o, x_u, method=method, precision=precision)
                direction = head_direction(head_fn, params, batched(feature_fn)(params, x_u))
        return FeatureStepResult(
            predicted=predicted,
            actual=actual,
            residual=actual - predicted,
            h_o=h_o,
            kernel=kernel,
            direction=direction,
            energy=update.g,
            loss=update.loss,
        )

    return run


def head_direction(head_fn: HeadFn, params: Params, h: Float[ArrayLike, " n *f"]) -> Float[Array, " n *of"]:
    r"""The direction term :math:`D = \nabla_h z`: the Jacobian of the head at each feature.

    Args:
      head_fn: ``head_fn(params, h) -> [*o]`` for one example's feature.
      params: pytree of parameters.
      h: features ``[n, *f]``.

    Returns:
      ``[n, *o, *f]``; for a linear head :math:`z = V h + b` every row is :math:`V`.

    Example:
      >>> import jax.numpy as jnp
      >>> from ldjax._src.features import head_direction
      >>> v = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # 3 logits from a 2-d feature
      >>> head_direction(lambda p, h: p @ h, v, jnp.ones((4, 2))).shape
      (4, 3, 2)
    """
    return jax.vmap(jax.jacrev(head_fn, argnums=1), in_axes=(None, 0))(params, h)


def feature_decomposition(
    kernel: Float[ArrayLike, "n_o n_u *ff"],
    direction: Float[ArrayLike, " n_u *of"],
    energy: Float[ArrayLike, " n_u *o"],
    learning_rate: LearningRate,
) -> Float[Array, " n_o *f"]:
    r"""Assemble :math:`-\eta \sum_u K_h(x_o, x_u)\, D(x_u)^\top G(x_u)` from explicit terms.

    Args:
      kernel: the feature kernel ``[n_o, n_u, *f, *f]`` (``FeatureStepResult.kernel``).
      direction: :math:`D = \nabla_h z` at ``x_u``, ``[n_u, *o, *f]``.
      energy: :math:`G = \partial L/\partial z` at ``x_u``, ``[n_u, *o]``.
      learning_rate: η.

    Returns:
      The predicted feature change ``[n_o, *f]`` of one plain-SGD step.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> kernel = jnp.eye(2)[None, None]                     # one x_o, one x_u, K_h = I
      >>> direction = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])   # D = I: 2 logits from a 2-d feature
      >>> energy = jnp.array([[0.5, -0.5]])                   # π − e_y with π = (½, ½), y = 1
      >>> ldjax.feature_decomposition(kernel, direction, energy, 0.1)
      Array([[-0.05,  0.05]], dtype=float32)
    """
    kernel, direction, energy = jnp.asarray(kernel), jnp.asarray(direction), jnp.asarray(energy)
    if energy.ndim < 2 or kernel.ndim < 3:
        raise ValueError(
            f"energy must be [n_u, *o] and kernel [n_o, n_u, *f, *f], got shapes {energy.shape} and {kernel.shape}"
        )
    n_u, out = energy.shape[0], energy.shape[1:]
    if direction.shape[: 1 + len(out)] != energy.shape:
        raise ValueError(
            f"direction has shape {direction.shape} but energy has shape {energy.shape}: expected direction "
            f"[n_u, *o, *f] = [{', '.join(map(str, energy.shape))}, *f]"
        )
    feature = direction.shape[1 + len(out) :]
    size = math.prod(feature)
    if kernel.shape[1:] != (n_u, *feature, *feature):
        raise ValueError(
            f"kernel has shape {kernel.shape}: expected [n_o, n_u, *f, *f] = [n_o, {n_u}, "
            f"{', '.join(map(str, (*feature, *feature)))}] for direction {direction.shape}"
        )
    push = jnp.einsum("uof,uo->uf", direction.reshape(n_u, -1, size), energy.reshape(n_u, -1))
    change = jnp.einsum("iufg,ug->if", kernel.reshape(kernel.shape[0], n_u, size, size), push)
    return (-learning_rate * change).reshape(kernel.shape[0], *feature)


def energy(logits: Float[ArrayLike, "*b k"], labels: Int[ArrayLike, "*b"]) -> Energy:
    r"""The energy :math:`\pi - e_y` of a data set: the mean of :math:`\|\pi - e_y\|_2` and of :math:`1 - \pi_y`.

    Taken on the downstream training set at the start of fine-tuning this is the authors' average initial
    energy, the budget the features' change draws on: head probing lowers it.

    Args:
      logits: ``[*b, k]``, e.g. ``jax.vmap(apply_fn, (None, 0))(params, x)`` (``*b`` = examples, or examples
        and positions).
      labels: integer labels ``[*b]`` in ``[0, k)``.

    Returns:
      :class:`Energy` (the means, and the per-example values ``[*b]``).

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> e = ldjax.energy(jnp.log(jnp.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]])), jnp.array([0, 1]))
      >>> [round(float(v), 4) for v in e.norm], [round(float(v), 4) for v in e.gap], round(float(e.mean_gap), 4)
      ([0.6124, 0.2449], [0.5, 0.2], 0.35)
    """
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    if logits.ndim < 1 or labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"labels has shape {labels.shape} but logits has shape {logits.shape}: expected one label per row "
            f"of logits, labels [*b] for logits [*b, k]"
        )
    k = logits.shape[-1]
    checks.check_ids(
        labels, k, "labels", what="class labels", short="labels", bound=f"the logits have k={k} classes"
    )
    force = softmax_minus_one_hot(logits, labels)  # π − e_y
    norm = jnp.linalg.norm(force, axis=-1)
    gap = -jnp.take_along_axis(force, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]  # 1 − π_y
    return Energy(mean=jnp.mean(norm), mean_gap=jnp.mean(gap), norm=norm, gap=gap)


def _compose(feature_fn: FeatureFn, head_fn: HeadFn) -> ApplyFn:
    """The whole model ``head_fn(params, feature_fn(params, x))``, keeping what ``feature_fn`` knows of its inputs."""
    return ApplyFunction(
        lambda params, x: head_fn(params, feature_fn(params, x)),
        getattr(feature_fn, "example_shape", None),
        check_input=getattr(feature_fn, "check_input", None),
    )
