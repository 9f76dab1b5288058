"""StatsPredictor: attention over variables, steered by pairwise data statistics."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from engine.models.features import (
    N_CELL_FEATURES,
    N_PAIR_FEATURES,
    N_QUADRATIC_FEATURES,
    N_TRIPLET_FEATURES,
    N_TRIPLET_SUMMARIES,
    cell_features,
    observational_correlation,
    pair_features,
    quadratic_features,
    triplet_features,
    triplet_summaries,
)
from engine.models.additive import N_ADDITIVE_FEATURES, additive_features
from engine.models.base import AmortizedPredictor
from engine.models.edges import EdgeBlock

_NEG = -1e9
TRIPLET_WIDTH = 16  # channels per pooled triple statistic (mean and max of each)
EDGE_WIDTH = 32  # channels per triangle contraction of an edge block


class RelationalAttention(eqx.Module):
    """Self-attention over variables with a learned per-head bias from pair features."""

    qkv: eqx.nn.Linear
    out: eqx.nn.Linear
    pair_bias: eqx.nn.MLP
    heads: int = eqx.field(static=True)

    def __init__(self, dim: int, heads: int, key: PRNGKeyArray, n_pair: int = N_PAIR_FEATURES):
        k1, k2, k3 = jax.random.split(key, 3)
        self.qkv = eqx.nn.Linear(dim, 3 * dim, key=k1)
        self.out = eqx.nn.Linear(dim, dim, key=k2)
        self.pair_bias = eqx.nn.MLP(n_pair, heads, 32, 1, activation=jax.nn.gelu, key=k3)
        self.heads = heads

    def __call__(
        self, h: Float[Array, "d dim"], pairs: Float[Array, "d d f"], mask: Bool[Array, " d"]
    ) -> Float[Array, "d dim"]:
        d, dim = h.shape
        q, k, v = jnp.split(jax.vmap(self.qkv)(h), 3, axis=-1)
        split = lambda t: t.reshape(d, self.heads, dim // self.heads).transpose(1, 0, 2)
        q, k, v = split(q), split(k), split(v)
        bias = jax.vmap(jax.vmap(self.pair_bias))(pairs).transpose(2, 0, 1)  # [heads, d, d]
        logits = q @ k.transpose(0, 2, 1) / jnp.sqrt(dim // self.heads) + bias
        logits = jnp.where(mask[None, None, :], logits, _NEG)
        mixed = jax.nn.softmax(logits, axis=-1) @ v  # [heads, d, dim/heads]
        return jax.vmap(self.out)(mixed.transpose(1, 0, 2).reshape(d, dim))


class TripletPool(eqx.Module):
    """Per candidate j of a target, an MLP over the triple statistics (j, t, k) of every third
    variable k (features.triplet_features), pooled over k by mean and max: evidence such as
    "some k is a collider of j and t" needs the existence of one k, which a max sees; beside
    it, fixed summaries of the same triples (features.triplet_summaries)."""

    mlp: eqx.nn.MLP
    width: int = eqx.field(static=True)

    def __init__(self, width: int, key: PRNGKeyArray):
        self.mlp = eqx.nn.MLP(N_TRIPLET_FEATURES, width, 32, 1, activation=jax.nn.gelu, key=key)
        self.width = width

    def __call__(
        self, corr: Float[Array, "d d"], prec: Float[Array, "d d"], var_mask: Bool[Array, " d"], target
    ) -> Float[Array, "d w"]:
        d = corr.shape[0]
        triples = triplet_features(corr, prec, target)
        h = jax.vmap(jax.vmap(self.mlp))(triples)  # [j, k, w]
        idx = jnp.arange(d)
        third = var_mask[None, :] & (idx[None, :] != idx[:, None]) & (idx[None, :] != target)  # [j, k]
        count = third.sum(1, keepdims=True)
        mean = jnp.where(third[..., None], h, 0.0).sum(1) / jnp.maximum(count, 1)
        peak = jnp.where(third[..., None], h, -jnp.inf).max(1)
        peak = jnp.where(count > 0, peak, 0.0)  # two variables: no third one to look at
        return jnp.concatenate([mean, peak, triplet_summaries(triples, third)], -1)


class Block(eqx.Module):
    norm1: eqx.nn.LayerNorm
    attn: RelationalAttention
    norm2: eqx.nn.LayerNorm
    mlp: eqx.nn.MLP

    def __init__(self, dim: int, heads: int, key: PRNGKeyArray, n_pair: int = N_PAIR_FEATURES):
        k1, k2 = jax.random.split(key)
        self.norm1 = eqx.nn.LayerNorm(dim)
        self.attn = RelationalAttention(dim, heads, k1, n_pair)
        self.norm2 = eqx.nn.LayerNorm(dim)
        self.mlp = eqx.nn.MLP(dim, dim, 2 * dim, 1, activation=jax.nn.gelu, key=k2)

    def __call__(self, h, pairs, mask):
        h = h + self.attn(jax.vmap(self.norm1)(h), pairs, mask)
        return h + jax.vmap(self.mlp)(jax.vmap(self.norm2)(h))


class StatsPredictor(AmortizedPredictor):
    """Parent logits of a target from a padded [n, d, 2] dataset.

    Each variable j becomes a token embedding its pair features with the target, (j, t) and
    (t, j), and its own diagonal ones (j, j) (how far its interventions pushed it); `layers`
    relational-attention blocks let variables compare notes (a variable that is correlated with
    the target only through another one); a linear head gives one logit per variable. The head's
    bias starts at -2 because parents are rare: the model has to learn to
    raise specific ones rather than the reverse. The graph head runs this once per target over
    shared pair features; `intervened` is a small per-cell head on value statistics. With
    `quadratic`, the pair features also hold second-order dependence (features.quadratic_features).
    With `triplets`, each token also holds what every third variable says about the pair
    (colliders, separating variables: TripletPool). With `additive`, the pair features also hold
    additive nonlinear dependence (engine.models.additive). With `edge_layers`, every target's
    final states become the [d, d] grid of edge representations, refined by edge blocks that let
    an edge read the others (engine.models.edges); the parent head is then a column of the graph.
    """

    embed: eqx.nn.MLP
    blocks: tuple[Block, ...]
    norm: eqx.nn.LayerNorm
    head: eqx.nn.Linear
    cell_head: eqx.nn.MLP
    triplets: TripletPool | None
    edges: tuple[EdgeBlock, ...]
    quadratic: bool = eqx.field(static=True)
    additive: bool = eqx.field(static=True)

    def __init__(self, spec, key: PRNGKeyArray):
        keys = jax.random.split(key, spec.layers + 3)
        self.quadratic = bool(getattr(spec, "quadratic", False))
        self.additive = bool(getattr(spec, "additive", False))
        n_pair = (N_PAIR_FEATURES + (N_QUADRATIC_FEATURES if self.quadratic else 0)
                  + (N_ADDITIVE_FEATURES if self.additive else 0))
        width = TRIPLET_WIDTH if getattr(spec, "triplets", False) else 0
        # its own key: models without it initialise exactly as before it existed
        self.triplets = TripletPool(width, jax.random.fold_in(key, 7)) if width else None
        self.embed = eqx.nn.MLP(3 * n_pair + 1 + (2 * width + N_TRIPLET_SUMMARIES if width else 0), spec.dim, spec.dim, 1, activation=jax.nn.gelu, key=keys[0])
        self.blocks = tuple(Block(spec.dim, spec.heads, k, n_pair) for k in keys[1:-2])
        self.norm = eqx.nn.LayerNorm(spec.dim)
        head = eqx.nn.Linear(spec.dim, 1, key=keys[-2])
        self.head = eqx.tree_at(lambda l: l.bias, head, jnp.full((1,), -2.0))
        self.cell_head = eqx.nn.MLP(N_CELL_FEATURES, 1, 32, 1, activation=jax.nn.gelu, key=keys[-1])
        n_edge = int(getattr(spec, "edge_layers", 0))
        self.edges = tuple(EdgeBlock(spec.dim, EDGE_WIDTH, k)  # own keys, as the triplets'
                           for k in jax.random.split(jax.random.fold_in(key, 11), n_edge)) if n_edge else ()

    @property
    def parents_from_graph(self) -> bool:
        return bool(self.edges)

    def _pairs(self, x, row_mask, var_mask):
        """What every target's head reads: pair features [d, d, f], and the observational
        (correlation, precision) for the triple statistics when the model has them."""
        pairs = pair_features(x, row_mask, var_mask)
        if self.quadratic:
            pairs = jnp.concatenate([pairs, quadratic_features(x, row_mask, var_mask)], axis=-1)
        if self.additive:
            pairs = jnp.concatenate([pairs, additive_features(x, row_mask, var_mask)], axis=-1)
        moments = observational_correlation(x, row_mask, var_mask) if self.triplets is not None else None
        return pairs, moments

    def _states(self, shared, var_mask, target) -> Float[Array, "d dim"]:
        """Every candidate's final state for `target`: the representation of edge (j, target)."""
        pairs, moments = shared
        d = pairs.shape[0]
        is_target = (jnp.arange(d) == target).astype(pairs.dtype)
        own = jnp.diagonal(pairs).T  # [d, f]: each variable's own statistics (its do() values)
        parts = [pairs[:, target], pairs[target, :], own, is_target[:, None]]
        if self.triplets is not None:
            parts.append(self.triplets(*moments, var_mask, target))
        tokens = jnp.concatenate(parts, -1)
        h = jax.vmap(self.embed)(tokens)
        for block in self.blocks:
            h = block(h, pairs, var_mask)
        return h

    def _logits(self, h: Float[Array, "... dim"]) -> Float[Array, "..."]:
        flat = h.reshape(-1, h.shape[-1])
        return jax.vmap(self.head)(jax.vmap(self.norm)(flat))[:, 0].reshape(h.shape[:-1])

    def _parents(self, shared, var_mask, target):
        d = var_mask.shape[0]
        logits = self._logits(self._states(shared, var_mask, target))
        candidate = var_mask & (jnp.arange(d) != target)
        return jnp.where(candidate, logits, _NEG)

    def __call__(
        self,
        x: Float[Array, "n d 2"],
        row_mask: Bool[Array, " n"],
        var_mask: Bool[Array, " d"],
        target: Int[Array, ""],
        *,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, " d"]:
        """Parent logits [d]; the target and padded variables get a large negative logit."""
        if self.edges:  # a target's parents depend on the whole graph
            return self.graph(x, row_mask, var_mask)[:, target]
        return self._parents(self._pairs(x, row_mask, var_mask), var_mask, target)

    def graph(
        self,
        x: Float[Array, "n d 2"],
        row_mask: Bool[Array, " n"],
        var_mask: Bool[Array, " d"],
        *,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "d d"]:
        """Edge logits [i, j] of i -> j: column j is the parent head with target j."""
        shared = self._pairs(x, row_mask, var_mask)
        d = var_mask.shape[0]
        if self.edges:
            e = jax.vmap(lambda t: self._states(shared, var_mask, t))(jnp.arange(d)).transpose(1, 0, 2)
            pair = var_mask[:, None] & var_mask[None, :] & ~jnp.eye(d, dtype=bool)  # [i, j]
            for block in self.edges:
                e = block(e, pair)
            return jnp.where(pair, self._logits(e), _NEG)
        cols = jax.vmap(lambda t: self._parents(shared, var_mask, t))(jnp.arange(d))  # [t, i]
        return jnp.where(var_mask[None, :], cols.T, _NEG)  # padded targets: no parents

    def intervened(
        self,
        x: Float[Array, "n d 2"],
        row_mask: Bool[Array, " n"],
        var_mask: Bool[Array, " d"],
        *,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "n d"]:
        """Logit that cell (row, variable) was intervened on, from the values alone."""
        cells = cell_features(x[..., 0], row_mask, var_mask)
        return jax.vmap(jax.vmap(self.cell_head))(cells)[..., 0]
