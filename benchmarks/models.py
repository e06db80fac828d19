"""Benchmark models written in plain JAX, so that ldjax (current JAX) and the peer,
neural-tangents 0.6.5 (JAX 0.4.23, its own venv), run exactly the same function on the same numbers.

Each model is ``apply(params, x) -> logits`` for ONE example; ``init(key, cfg) -> params`` gives a
flat dict of float32 arrays (saved to / loaded from ``.npz``). Only APIs present in both JAX
versions are used. (ldjax's own NNX models live in ``ldjax.models``; flax differs between the two
environments, so the side-by-side uses these.)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

DN = ("NHWC", "HWIO", "NHWC")


def _dense_init(key, fan_in, fan_out):
    return jax.random.normal(key, (fan_in, fan_out), jnp.float32) / math.sqrt(fan_in)


# ---------------------------------------------------------------------------- FCN
def fcn_init(key, cfg):
    widths = cfg["widths"]
    keys = jax.random.split(key, len(widths))
    p = {}
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        p[f"w{i}"] = _dense_init(keys[i], a, b)
        p[f"b{i}"] = 0.1 * jax.random.normal(jax.random.fold_in(keys[i], 1), (b,), jnp.float32)
    return p


def fcn_apply(params, x, cfg):
    n = len(cfg["widths"]) - 1
    h = x
    for i in range(n):
        h = h @ params[f"w{i}"] + params[f"b{i}"]
        if i < n - 1:
            h = jax.nn.relu(h)
    return h


# ---------------------------------------------------------------------------- LeNet-5
def _conv_init(key, kh, kw, cin, cout):
    return jax.random.normal(key, (kh, kw, cin, cout), jnp.float32) / math.sqrt(kh * kw * cin)


def _conv(x, w, stride=1, padding="SAME"):
    return jax.lax.conv_general_dilated(x[None], w, (stride, stride), padding, dimension_numbers=DN)[0]


def _avg_pool2(h):
    hh, ww, c = h.shape
    return h.reshape(hh // 2, 2, ww // 2, 2, c).mean(axis=(1, 3))


def lenet_init(key, cfg):
    k = jax.random.split(key, 5)
    return {
        "conv1/kernel": _conv_init(k[0], 5, 5, 1, 6),
        "conv1/bias": jnp.zeros((6,), jnp.float32),
        "conv2/kernel": _conv_init(k[1], 5, 5, 6, 16),
        "conv2/bias": jnp.zeros((16,), jnp.float32),
        "fc1/kernel": _dense_init(k[2], 400, 120),
        "fc1/bias": jnp.zeros((120,), jnp.float32),
        "fc2/kernel": _dense_init(k[3], 120, 84),
        "fc2/bias": jnp.zeros((84,), jnp.float32),
        "fc3/kernel": _dense_init(k[4], 84, cfg["k"]),
        "fc3/bias": jnp.zeros((cfg["k"],), jnp.float32),
    }


def lenet_apply(p, x, cfg):
    h = jnp.tanh(_conv(x, p["conv1/kernel"]) + p["conv1/bias"])  # 28x28x6
    h = _avg_pool2(h)  # 14x14x6
    h = jnp.tanh(_conv(h, p["conv2/kernel"], padding="VALID") + p["conv2/bias"])  # 10x10x16
    h = _avg_pool2(h).reshape(-1)  # 400
    h = jnp.tanh(h @ p["fc1/kernel"] + p["fc1/bias"])
    h = jnp.tanh(h @ p["fc2/kernel"] + p["fc2/bias"])
    return h @ p["fc3/kernel"] + p["fc3/bias"]


# ---------------------------------------------------------------------------- small ResNet
def resnet_init(key, cfg):
    c = cfg["channels"]
    keys = iter(jax.random.split(key, 64))
    p = {"stem/kernel": _conv_init(next(keys), 3, 3, 3, c[0]), "stem/bias": jnp.zeros((c[0],), jnp.float32)}
    cin = c[0]
    for s, cout in enumerate(c):
        for b in range(cfg["blocks"]):
            name = f"stage{s}/block{b}"
            p[f"{name}/conv1/kernel"] = _conv_init(next(keys), 3, 3, cin, cout)
            p[f"{name}/conv1/bias"] = jnp.zeros((cout,), jnp.float32)
            p[f"{name}/conv2/kernel"] = _conv_init(next(keys), 3, 3, cout, cout) * 0.5
            p[f"{name}/conv2/bias"] = jnp.zeros((cout,), jnp.float32)
            if cin != cout:
                p[f"{name}/skip/kernel"] = _conv_init(next(keys), 1, 1, cin, cout)
            cin = cout
    p["head/kernel"] = _dense_init(next(keys), cin, cfg["k"])
    p["head/bias"] = jnp.zeros((cfg["k"],), jnp.float32)
    return p


def resnet_apply(p, x, cfg):
    h = jax.nn.relu(_conv(x, p["stem/kernel"]) + p["stem/bias"])
    cin = cfg["channels"][0]
    for s, cout in enumerate(cfg["channels"]):
        for b in range(cfg["blocks"]):
            name = f"stage{s}/block{b}"
            stride = 2 if (b == 0 and s > 0) else 1
            y = jax.nn.relu(_conv(h, p[f"{name}/conv1/kernel"], stride) + p[f"{name}/conv1/bias"])
            y = _conv(y, p[f"{name}/conv2/kernel"]) + p[f"{name}/conv2/bias"]
            skip = h if cin == cout else _conv(h, p[f"{name}/skip/kernel"], stride)
            h = jax.nn.relu(y + skip)
            cin = cout
    h = h.mean(axis=(0, 1))
    return h @ p["head/kernel"] + p["head/bias"]


# ---------------------------------------------------------------------------- small GPT
def gpt_init(key, cfg):
    d, v, t, layers = cfg["d"], cfg["vocab"], cfg["T"], cfg["layers"]
    keys = iter(jax.random.split(key, 8 * layers + 4))
    p = {
        "tok/embedding": jax.random.normal(next(keys), (v, d), jnp.float32) * 0.5,
        "pos/embedding": jax.random.normal(next(keys), (t, d), jnp.float32) * 0.1,
    }
    for i in range(layers):
        b = f"block{i}"
        p[f"{b}/ln1/scale"] = jnp.ones((d,), jnp.float32)
        p[f"{b}/ln1/bias"] = jnp.zeros((d,), jnp.float32)
        for name in ("query", "key", "value", "out"):
            p[f"{b}/{name}/kernel"] = _dense_init(next(keys), d, d)
            p[f"{b}/{name}/bias"] = jnp.zeros((d,), jnp.float32)
        p[f"{b}/ln2/scale"] = jnp.ones((d,), jnp.float32)
        p[f"{b}/ln2/bias"] = jnp.zeros((d,), jnp.float32)
        p[f"{b}/up/kernel"] = _dense_init(next(keys), d, 4 * d)
        p[f"{b}/up/bias"] = jnp.zeros((4 * d,), jnp.float32)
        p[f"{b}/down/kernel"] = _dense_init(next(keys), 4 * d, d) * 0.5
        p[f"{b}/down/bias"] = jnp.zeros((d,), jnp.float32)
    p["ln_f/scale"] = jnp.ones((d,), jnp.float32)
    p["ln_f/bias"] = jnp.zeros((d,), jnp.float32)
    p["head/kernel"] = _dense_init(next(keys), d, v)
    return p


def _layer_norm(h, scale, bias):
    mu = h.mean(-1, keepdims=True)
    var = ((h - mu) ** 2).mean(-1, keepdims=True)
    return (h - mu) / jnp.sqrt(var + 1e-5) * scale + bias


def gpt_logits(p, tokens, cfg):
    """All positions: ``[T] int -> [T, V]``."""
    d, heads = cfg["d"], cfg["heads"]
    t = tokens.shape[0]
    h = p["tok/embedding"][tokens] + p["pos/embedding"][:t]
    causal = jnp.tril(jnp.ones((t, t), bool))
    for i in range(cfg["layers"]):
        b = f"block{i}"
        x = _layer_norm(h, p[f"{b}/ln1/scale"], p[f"{b}/ln1/bias"])
        q, k, v = (
            (x @ p[f"{b}/{n}/kernel"] + p[f"{b}/{n}/bias"]).reshape(t, heads, d // heads)
            for n in ("query", "key", "value")
        )
        s = jnp.einsum("qhc,khc->hqk", q, k) / math.sqrt(d // heads)
        s = jnp.where(causal, s, -1e9)
        mixed = jnp.einsum("hqk,khc->qhc", jax.nn.softmax(s, axis=-1), v).reshape(t, d)
        h = h + mixed @ p[f"{b}/out/kernel"] + p[f"{b}/out/bias"]
        x = _layer_norm(h, p[f"{b}/ln2/scale"], p[f"{b}/ln2/bias"])
        u = jax.nn.gelu(x @ p[f"{b}/up/kernel"] + p[f"{b}/up/bias"], approximate=True)
        h = h + u @ p[f"{b}/down/kernel"] + p[f"{b}/down/bias"]
    h = _layer_norm(h, p["ln_f/scale"], p["ln_f/bias"])
    return h @ p["head/kernel"]


def gpt_apply(p, tokens, cfg):
    """Logits at the last position, ``[V]`` (k = vocabulary)."""
    return gpt_logits(p, tokens, cfg)[-1]


# ---------------------------------------------------------------------------- registry
MODELS = {
    "fcn": (fcn_init, fcn_apply),
    "lenet5": (lenet_init, lenet_apply),
    "resnet": (resnet_init, resnet_apply),
    "gpt": (gpt_init, gpt_apply),
}


def make_inputs(key, model, cfg, n):
    if model == "fcn":
        return jax.random.normal(key, (n, cfg["widths"][0]), jnp.float32)
    if model == "lenet5":
        return jax.random.normal(key, (n, 28, 28, 1), jnp.float32)
    if model == "resnet":
        return jax.random.normal(key, (n, 32, 32, 3), jnp.float32)
    if model == "gpt":
        return jax.random.randint(key, (n, cfg["T"]), 0, cfg["vocab"], jnp.int32)
    raise ValueError(model)
