"""The shared fit of the classification experiments: members are independent runs, records are what they say."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ldjax._src.experiments import fitting


def linear(params, x):
    return jnp.tanh(x @ params["w"]) @ params["v"]


def problem(seed, n=12, d=4, k=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.integers(0, k, size=n)
    params = {"w": rng.normal(size=(d, 5)) * 0.5, "v": rng.normal(size=(5, k)) * 0.5}
    return x, y, params


@pytest.mark.float64
@pytest.mark.parametrize("optimizer", [optax.sgd(0.1, momentum=0.9), optax.adamw(0.05, weight_decay=0.1)])
def test_members_train_exactly_like_separate_runs(optimizer):
    """Two members in one program = two separate runs (the summed loss gives each member its own gradient)."""
    runs = []
    for seed in (0, 1):
        x, y, p = problem(seed)
        t = np.eye(3)[y] * 0.9 + 0.1 / 3
        runs.append((x, t, p, jax.random.key(seed + 10), 0.5 + seed))
    members = fitting.Members(
        x=jnp.stack([r[0] for r in runs]),
        targets=jnp.stack([r[1] for r in runs]),
        temperature=jnp.array([r[4] for r in runs]),
        scale=jnp.array([1.0, 3.0]),
    )
    kwargs = {"epochs": 3, "batch_size": 4, "optimizer": optimizer, "keep_params": True}
    both = fitting.fit(
        linear,
        fitting.stack([r[2] for r in runs]),
        members,
        keys=jnp.stack([r[3] for r in runs]),
        **kwargs,
    )
    for m, (x, t, p, key, tau) in enumerate(runs):
        alone = fitting.Members(
            x=x[None], targets=t[None], temperature=jnp.array([tau]), scale=jnp.array([[1.0, 3.0][m]])
        )
        one = fitting.fit(linear, fitting.stack([p]), alone, keys=key[None], **kwargs)
        for a, b in zip(
            jax.tree.leaves(fitting.member(both.params, m)), jax.tree.leaves(one.params), strict=True
        ):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b)[0], rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(both.batches[:, m], one.batches[:, 0])


def one_update(params, members, lr=0.3):
    """One full-batch SGD update of a single member (4 examples, batch 4)."""
    return fitting.fit(
        linear,
        fitting.stack([params]),
        members,
        keys=jax.random.key(0)[None],
        epochs=1,
        batch_size=4,
        optimizer=optax.sgd(lr),
    )


@pytest.mark.float64
def test_one_update_matches_a_hand_written_sgd_step():
    """Member loss = scale · soft cross-entropy(z / τ, targets), mean over the minibatch; one plain SGD step."""
    x, y, p = problem(2, n=4)
    t = np.eye(3)[y]
    members = fitting.Members(
        x=x[None], targets=t[None], temperature=jnp.array([2.0]), scale=jnp.array([8.0])
    )
    run = one_update(p, members)

    def loss(params):
        z = jax.vmap(linear, (None, 0))(params, x) / 2.0
        return 8.0 * jnp.mean(-jnp.sum(t * jax.nn.log_softmax(z), -1))

    grads = jax.grad(loss)(p)
    for name in p:
        np.testing.assert_allclose(
            np.asarray(run.params[name][0]), p[name] - 0.3 * np.asarray(grads[name]), rtol=1e-10
        )


@pytest.mark.float64
def test_records_best_epoch_visits_and_probes():
    x, y, p = problem(3, n=10)
    members = fitting.Members(
        x=x[None], targets=np.eye(3)[y][None], x_val=x[None], y_val=y[None], probes=x[None, :2]
    )
    run = fitting.fit(
        linear,
        fitting.stack([p]),
        members,
        keys=jax.random.key(1)[None],
        epochs=4,
        batch_size=3,
        optimizer=optax.sgd(0.5),
        record_train=True,
        keep_params=True,
        record_visits=True,
    )
    steps_per_epoch = 3
    assert run.val_accuracy.shape == (5, 1) and run.train_logits.shape == (5, 1, 10, 3)
    assert run.probes.shape == (5, 1, 2, 3) and run.visits.shape == (4, 1, 10, 3)
    # the best record is chosen among records >= 1 (evaluations after an epoch), first of ties
    assert run.best[0] == 1 + int(np.argmax(run.val_accuracy[1:, 0]))
    best = fitting.member(run.best_params, 0)
    for name in p:
        np.testing.assert_array_equal(best[name], run.params_records[name][run.best[0], 0])
    # recorded logits are the model's at the recorded parameters
    rec = fitting.member(jax.tree.map(lambda a: a[2], run.params_records), 0)
    np.testing.assert_allclose(run.train_logits[2, 0], jax.vmap(linear, (None, 0))(rec, x), rtol=1e-12)
    np.testing.assert_allclose(
        run.probes[2, 0], jax.nn.softmax(jax.vmap(linear, (None, 0))(rec, x[:2]), -1), rtol=1e-12
    )
    # visits: each epoch sees the 9 examples of its 3 minibatches once, at the parameters before that update
    order = run.batches[:, 0]
    for epoch in range(4):
        seen = np.zeros(10, bool)
        seen[order[epoch * steps_per_epoch : (epoch + 1) * steps_per_epoch].ravel()] = True
        np.testing.assert_array_equal(run.seen[epoch, 0], seen)
    # the first update's minibatch is visited at the initial parameters
    first = order[0]
    np.testing.assert_allclose(run.visits[0, 0, first], jax.vmap(linear, (None, 0))(p, x[first]), rtol=1e-12)


@pytest.mark.float64
def test_teacher_targets_replace_the_table():
    """With a teacher network, the targets are softmax(teacher(x) / τ) on the minibatch, not ``targets``."""
    x, _, p = problem(4, n=4)
    _, _, teacher = problem(5, n=4)
    members = fitting.Members(
        x=x[None],
        targets=np.full((1, 4, 3), 1 / 3),
        temperature=jnp.array([2.0]),
        teacher=fitting.stack([teacher]),
    )
    run = one_update(p, members)
    t = jax.nn.softmax(jax.vmap(linear, (None, 0))(teacher, x) / 2.0, -1)

    def loss(params):
        z = jax.vmap(linear, (None, 0))(params, x) / 2.0
        return jnp.mean(-jnp.sum(t * jax.nn.log_softmax(z), -1))

    grads = jax.grad(loss)(p)
    np.testing.assert_allclose(
        np.asarray(run.params["w"][0]), p["w"] - 0.3 * np.asarray(grads["w"]), rtol=1e-10
    )


def test_crop_and_flip_matches_numpy():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(6, 5, 2)).astype(np.float32)
    padded = np.pad(img, ((4, 4), (4, 4), (0, 0)))
    for shift, flip in (((4, 4), False), ((0, 8), True), ((7, 1), False), ((3, 6), True)):
        ref = padded[shift[0] : shift[0] + 6, shift[1] : shift[1] + 5]
        ref = ref[:, ::-1] if flip else ref
        got = jax.jit(fitting.crop_and_flip)(jnp.asarray(img), jnp.array(shift), jnp.array(flip))
        np.testing.assert_array_equal(np.asarray(got), ref)


def test_fit_rejects_bad_arguments():
    x, y, p = problem(0)
    members = fitting.Members(x=x[None], targets=np.eye(3)[y][None])

    def run(keys=None, **kwargs):
        keys = jax.random.key(0)[None] if keys is None else keys
        return fitting.fit(
            linear,
            fitting.stack([p]),
            members,
            keys=keys,
            epochs=1,
            batch_size=4,
            optimizer=optax.sgd(0.1),
            **kwargs,
        )

    with pytest.raises(ValueError, match="keys must hold one key per member"):
        run(keys=jax.random.split(jax.random.key(0), 2))
    with pytest.raises(ValueError, match="records_per_epoch=2 must divide"):
        run(records_per_epoch=2)
    with pytest.raises(ValueError, match="record_visits needs"):
        run(records_per_epoch=3, record_visits=True)
