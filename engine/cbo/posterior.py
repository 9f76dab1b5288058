"""A belief over the target's parent set: weighted candidate sets, with the marginals, entropy and
top sets every strategy reads. Built from the expert's set posterior or from an amortized model's
marginals (sets scored as independent Bernoulli edges)."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from engine.expert import sets as S


class ParentSetPosterior(eqx.Module):
    """sets [S, k]: candidate parent sets as variable indices padded with -1; log_w [S]: their
    normalised log probabilities (-inf for impossible or padding sets); d: number of variables."""

    sets: Int[Array, "S k"]
    log_w: Float[Array, " S"]
    d: int = eqx.field(static=True)

    @classmethod
    def from_weights(cls, sets: Int[Array, "S k"], w: Float[Array, " S"], d: int) -> "ParentSetPosterior":
        w = jnp.asarray(w, jnp.float32)
        log_w = jnp.where(w > 0, jnp.log(jnp.maximum(w, 1e-38)), -jnp.inf)
        return cls(jnp.asarray(sets, jnp.int32), log_w - jax.nn.logsumexp(log_w), d)

    @classmethod
    def point(cls, parents: Bool[Array, " d"], k: int | None = None) -> "ParentSetPosterior":
        """All mass on one set (the oracle's belief)."""
        d = parents.shape[0]
        k = k or d
        idx = jnp.nonzero(parents, size=k, fill_value=-1)[0].astype(jnp.int32)
        return cls(idx[None], jnp.zeros(1, jnp.float32), d)

    @classmethod
    def from_marginals(
        cls, marginals: Float[Array, " d"], var_mask: Bool[Array, " d"], target: Int[Array, ""],
        max_parents: int, n_sets: int,
    ) -> "ParentSetPosterior":
        """The `n_sets` most probable sets of at most `max_parents` variables when each variable is
        a parent independently with its marginal, their weights renormalised over those kept
        (jittable: the candidate sets are enumerated over the `top` most probable variables,
        which provably hold every one of the n_sets best: see `_enough_vars`)."""
        d = marginals.shape[0]
        ok = var_mask & (jnp.arange(d) != target)
        p = jnp.clip(jnp.where(ok, marginals, 0.0), 1e-6, 1 - 1e-6)
        top = _enough_vars(d, max_parents, n_sets)
        order = jnp.argsort(-jnp.where(ok, p, -1.0))[:top]  # most probable real candidates first
        local = jnp.asarray(S.all_sets(top, max_parents))  # [C, k] over positions in `order`
        sets = jnp.where(local >= 0, order[jnp.maximum(local, 0)], -1)
        real = jnp.all((local < 0) | ok[jnp.maximum(sets, 0)], axis=1)
        memb = S.membership(sets, d) > 0  # [C, d]
        logit = jnp.log(p) - jnp.log1p(-p)
        score = jnp.sum(jnp.where(memb, logit, 0.0), 1) + jnp.sum(jnp.where(ok, jnp.log1p(-p), 0.0))
        score = jnp.where(real, score, -jnp.inf)
        keep = jnp.argsort(-score)[:n_sets]
        log_w = score[keep]
        return cls(sets[keep].astype(jnp.int32), log_w - jax.nn.logsumexp(log_w), d)

    @property
    def probs(self) -> Float[Array, " S"]:
        return jnp.exp(self.log_w)

    def marginals(self) -> Float[Array, " d"]:
        """P(i is a parent) = sum of the weights of the sets holding i."""
        return self.probs @ S.membership(self.sets, self.d)

    def entropy(self) -> Float[Array, ""]:
        """Shannon entropy (nats) of the set distribution."""
        w = self.probs
        return -jnp.sum(jnp.where(w > 0, w * self.log_w, 0.0))

    def top_k(self, k: int) -> tuple[Int[Array, "k kk"], Float[Array, " k"]]:
        """The k most probable sets and their probabilities, most probable first."""
        idx = jnp.argsort(-self.log_w)[:k]
        return self.sets[idx], self.probs[idx]


MAX_ENUMERATED = 65_536  # candidate sets `from_marginals` enumerates at most (one compiled shape)


def _n_sets_over(top: int, max_parents: int) -> int:
    return sum(math.comb(top, r) for r in range(min(top, max_parents) + 1))


def _enough_vars(d: int, max_parents: int, n_sets: int) -> int:
    """How many of the most probable variables the n_sets best sets can use: a set holding the
    variable of rank r (1 = most probable) is beaten by the at least r - |S| sets that swap that
    variable for a more probable one outside S, so a set among the n best has r <= n_sets - 1 +
    max_parents. (The fewest variables that give n_sets sets are not enough: with p = (0.9, 0.9,
    0.9), one parent and 3 sets, {2} beats the empty set.) At least those fewest, so that n_sets
    sets exist when d allows; at most as many as give MAX_ENUMERATED sets (beyond that, e.g. 8
    parents and 1024 sets, the sets are the best over the most probable variables only)."""
    fewest = next((t for t in range(1, d + 1) if _n_sets_over(t, max_parents) >= n_sets), d)
    top = min(d, max(fewest, n_sets - 1 + max_parents))
    while top > fewest and _n_sets_over(top, max_parents) > MAX_ENUMERATED:
        top -= 1
    return top


def as_numpy_sets(post: ParentSetPosterior) -> list[tuple[tuple[int, ...], float]]:
    """(set, probability) pairs with positive probability, for tests and reports."""
    sets, w = np.asarray(post.sets), np.asarray(post.probs)
    return [(tuple(int(v) for v in s if v >= 0), float(p)) for s, p in zip(sets, w) if p > 0]
