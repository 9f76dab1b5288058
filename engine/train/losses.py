"""Losses of the amortized models.

`build_loss(spec) -> Loss`; `loss(model, batch, dual) -> (scalar, aux)`. The base term (`bce`,
`focal`, `kl_expert`) scores the parent head `model(x, row_mask, var_mask, target) -> [d]`
against the target's parents (or the expert's marginals), averaged over candidate entries (real
variables other than the target). Optional terms, each switched on by a positive weight:

- calibration: soft-binned expected calibration error of the parent probabilities;
- graph: BCE of the graph head `model.graph(x, row_mask, var_mask) -> [d, d]` against the
  whole adjacency, over real off-diagonal pairs;
- acyclicity: AVICI's spectral radius of the edge-probability matrix (power iteration), times
  `acyclicity_weight * dual`; the trainer owns `dual` and raises it by dual ascent
  (dual += rate * aux["acyclicity"]), so a graph head with cycles pays more and more;
- intervention: BCE of `model.intervened(x, row_mask, var_mask) -> [n, d]`, a small head that
  guesses from the values alone (indicator hidden) which cells were intervened on.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from engine.data.demos import Batch

_EPS = 1e-8


def candidates(batch: Batch):
    d = batch.var_mask.shape[-1]
    return batch.var_mask & (jnp.arange(d)[None, :] != batch.target[:, None])


def pair_candidates(var_mask):
    """[..., d, d] real ordered pairs (i, j), i != j."""
    d = var_mask.shape[-1]
    return var_mask[..., :, None] & var_mask[..., None, :] & ~jnp.eye(d, dtype=bool)


def _masked_mean(values, mask):
    mask = mask.astype(values.dtype)
    return (values * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def _bce(logits, y, pos_weight=1.0):
    y, logits = y.astype(jnp.float32), logits.astype(jnp.float32)
    return -(pos_weight * y * jax.nn.log_sigmoid(logits) + (1 - y) * jax.nn.log_sigmoid(-logits))


def bce(logits, batch: Batch, pos_weight: float = 1.0):
    """Binary cross-entropy against the true parents; `pos_weight` scales the positive term."""
    return _masked_mean(_bce(logits, batch.parents, pos_weight), candidates(batch))


def focal(logits, batch: Batch, gamma: float = 2.0, alpha: float | None = None):
    """-a_y (1 - p_y)^gamma log p_y, p_y the probability of the true label; a_1 = alpha,
    a_0 = 1 - alpha (both 1 when alpha is None: gamma = 0 is then plain BCE)."""
    y = batch.parents.astype(jnp.float32)
    logits = logits.astype(jnp.float32)
    p = jax.nn.sigmoid(logits)
    a_pos, a_neg = (1.0, 1.0) if alpha is None else (alpha, 1.0 - alpha)
    pos = a_pos * (1 - p) ** gamma * jax.nn.log_sigmoid(logits)
    neg = a_neg * p**gamma * jax.nn.log_sigmoid(-logits)
    return _masked_mean(-(y * pos + (1 - y) * neg), candidates(batch))


def kl_expert(logits, batch: Batch):
    """KL(expert || model) per variable, each a Bernoulli over "is a parent"."""
    p = jnp.clip(batch.expert.astype(jnp.float32), 1e-6, 1 - 1e-6)
    logits = logits.astype(jnp.float32)
    log_q, log_1q = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
    per = p * (jnp.log(p) - log_q) + (1 - p) * (jnp.log1p(-p) - log_1q)
    return _masked_mean(per, candidates(batch))


def soft_ece(probs, labels, mask, bins: int = 10, width: float | None = None):
    """Differentiable expected calibration error: sum_b (m_b / m) |conf_b - acc_b|.

    Each probability belongs to bin b (centre (b + 1/2) / bins) with weight softmax_b of
    -(p - c_b)^2 / (2 width^2) (width 1 / (2 bins) by default); conf_b and acc_b are the
    weighted means of the probabilities and the labels in bin b, m_b its weighted count.
    As width -> 0 this is the usual hard-binned ECE.
    """
    width = 0.5 / bins if width is None else width
    p = probs.reshape(-1).astype(jnp.float32)
    y = labels.reshape(-1).astype(jnp.float32)
    m = mask.reshape(-1).astype(jnp.float32)
    centres = (jnp.arange(bins) + 0.5) / bins
    w = jax.nn.softmax(-((p[:, None] - centres[None, :]) ** 2) / (2 * width**2), axis=1)
    w = w * m[:, None]
    mass = w.sum(0)
    conf = (w * p[:, None]).sum(0) / jnp.maximum(mass, _EPS)
    acc = (w * y[:, None]).sum(0) / jnp.maximum(mass, _EPS)
    return (mass * jnp.abs(conf - acc)).sum() / jnp.maximum(m.sum(), 1.0)


def spectral_radius(p, n_iter: int = 10):
    """Spectral radius of a non-negative [d, d] matrix by `n_iter` power iterations (AVICI).

    Right and left Perron vectors u, v are iterated without gradient; the estimate
    v^T P u / v^T u has gradient v u^T / v^T u, the derivative of the Perron eigenvalue. It is
    exactly 0 for a DAG whose longest path is shorter than `n_iter` (P is nilpotent).
    """
    p = p.astype(jnp.float32)
    fixed = jax.lax.stop_gradient(p)
    u = jnp.ones(p.shape[-1], p.dtype)
    v = jnp.ones(p.shape[-1], p.dtype)
    for _ in range(n_iter):
        u = fixed @ u
        u = u / (jnp.linalg.norm(u) + _EPS)
        v = fixed.T @ v
        v = v / (jnp.linalg.norm(v) + _EPS)
    u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
    return (v @ p @ u) / (v @ u + _EPS)


def base_term(spec, logits, batch: Batch):
    """The kind's own term on parent logits [B, d]."""
    if spec.kind == "bce":
        return bce(logits, batch, spec.pos_weight)
    if spec.kind == "focal":
        return focal(logits, batch, spec.gamma, spec.alpha)
    if spec.kind == "kl_expert":
        return kl_expert(logits, batch)
    raise ValueError(f"unknown loss kind {spec.kind!r}")


@dataclass(frozen=True)
class Loss:
    """`loss(model, batch, dual=0.0) -> (total, aux)`; aux holds every term by name (unweighted):
    "base", "acyclicity" (always; 0.0 when unused) and, when switched on, "calibration",
    "graph", "intervention"."""

    spec: object  # engine.spec.model.LossSpec

    @property
    def needs_graph(self) -> bool:
        return self.spec.graph_weight > 0 or self.spec.acyclicity_weight > 0

    def __call__(self, model, batch: Batch, dual=0.0):
        spec = self.spec
        x, rows, vars_ = batch.x, batch.row_mask, batch.var_mask
        graph = None
        if self.needs_graph and getattr(model, "parents_from_graph", False):  # one graph pass, both terms
            graph = jax.vmap(model.graph)(x, rows, vars_)  # [B, d, d]
            logits = jnp.take_along_axis(graph, batch.target[:, None, None], axis=2)[..., 0]
        else:
            logits = jax.vmap(model)(x, rows, vars_, batch.target)
        base = base_term(spec, logits, batch)
        total, aux = base, {"base": base, "acyclicity": jnp.zeros((), jnp.float32)}
        if spec.calibration_weight > 0:
            cal = soft_ece(jax.nn.sigmoid(logits), batch.parents, candidates(batch), spec.calibration_bins)
            total, aux["calibration"] = total + spec.calibration_weight * cal, cal
        if self.needs_graph:
            if graph is None:
                graph = jax.vmap(model.graph)(x, rows, vars_)  # [B, d, d]
            pairs = pair_candidates(vars_)
            if spec.graph_weight > 0:
                g = _masked_mean(_bce(graph, batch.adjacency, getattr(spec, "pos_weight", 1.0)), pairs)
                total, aux["graph"] = total + spec.graph_weight * g, g
            if spec.acyclicity_weight > 0:
                probs = jax.nn.sigmoid(graph.astype(jnp.float32)) * pairs
                h = jax.vmap(lambda p: spectral_radius(p, spec.power_iterations))(probs).mean()
                total = total + spec.acyclicity_weight * dual * h
                aux["acyclicity"] = h
        if spec.intervention_weight > 0:
            guess = jax.vmap(model.intervened)(x, rows, vars_)  # [B, n, d]
            cells = rows[:, :, None] & vars_[:, None, :]
            iv = _masked_mean(_bce(guess, x[..., 1] > 0.5), cells)
            total, aux["intervention"] = total + spec.intervention_weight * iv, iv
        return total, aux


def build_loss(spec) -> Loss:
    """The loss a [loss] section declares (see the module docstring)."""
    if spec.kind not in ("bce", "focal", "kl_expert"):
        raise ValueError(f"unknown loss kind {spec.kind!r}")
    return Loss(spec)

