"""Losses over parent logits. Each takes (logits [B, d], batch) and returns a scalar mean over the
candidate entries (real variables other than the target)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from engine.data.demos import Batch


def candidates(batch: Batch):
    d = batch.var_mask.shape[-1]
    return batch.var_mask & (jnp.arange(d)[None, :] != batch.target[:, None])


def _masked_mean(values, mask):
    mask = mask.astype(values.dtype)
    return (values * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def bce(logits, batch: Batch, pos_weight: float = 1.0):
    """Binary cross-entropy against the true parents; `pos_weight` scales the positive term."""
    y = batch.parents.astype(jnp.float32)
    logits = logits.astype(jnp.float32)
    per = -(pos_weight * y * jax.nn.log_sigmoid(logits) + (1 - y) * jax.nn.log_sigmoid(-logits))
    return _masked_mean(per, candidates(batch))


def kl_expert(logits, batch: Batch):
    """KL(expert || model) per variable, each a Bernoulli over "is a parent"."""
    p = jnp.clip(batch.expert.astype(jnp.float32), 1e-6, 1 - 1e-6)
    logits = logits.astype(jnp.float32)
    log_q, log_1q = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
    per = p * (jnp.log(p) - log_q) + (1 - p) * (jnp.log1p(-p) - log_1q)
    return _masked_mean(per, candidates(batch))


def build_loss(spec):
    """The loss function a [loss] section declares: (logits, batch) -> scalar."""
    if spec.kind == "bce":
        return lambda logits, batch: bce(logits, batch, spec.pos_weight)
    if spec.kind == "kl_expert":
        return kl_expert
    raise ValueError(f"unknown loss kind {spec.kind!r}")
