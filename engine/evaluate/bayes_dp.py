"""Exact Bayesian edge marginals over all DAGs of up to 20 variables, by dynamic programming.

Koivisto & Sood (2004): under an order-modular prior (a uniform prior over variable orders, and
given an order, each variable's parents any set of at most `max_parents` predecessors, uniformly)
the posterior probability of every edge sums over all d! orders and all their DAGs in
O(d^2 2^d) time:

- local score s_i(S): the linear-Gaussian BIC of x_i regressed on x_S, as GES scores a family
  (`local_scores`), or an average of that and an additive nonlinear fit (`additive_scores`);
- alpha_i(U) = log sum_{S subset of U} exp s_i(S), a subset-sum (zeta) transform;
- L(U) sums the orders of U with parents inside U; R(T) the orders of T placed after V \\ T;
- P(j -> i) = sum over U (i's predecessors, j in U) of L(U) beta_ij(U) R(V \\ U \\ i) / L(V),
  where beta_ij(U) sums exp s_i(S) over the sets S of U that contain j.

This is the answer a Bayesian with this score and prior gives, with no search error: on 1,000
linear-Gaussian rows it ranks edges far better than GES's one graph. Its cost doubles with each
variable (20 variables: seconds and ~1 GB), so it is a baseline for small graphs only.
"""

from __future__ import annotations

from itertools import combinations
from math import comb
from typing import Callable

import numpy as np
from jaxtyping import Float

MAX_VARIABLES = 20


def local_scores(x: Float[np.ndarray, "n d"], max_parents: int) -> Float[np.ndarray, "d M"]:
    """s[i, mask]: BIC of x_i on the variables in `mask` (bit j: x_j), -inf where the mask holds
    i or more than `max_parents` variables. Columns are z-scored (BIC is scale-free)."""
    n, d = x.shape
    z = (x - x.mean(0)) / x.std(0)
    cov = z.T @ z / n
    s = np.full((d, 1 << d), -np.inf)
    s[:, 0] = -n / 2 * np.log(np.diag(cov))
    for k in range(1, min(max_parents, d - 1) + 1):
        sets = np.asarray(list(combinations(range(d), k)))  # [m, k]
        inv = np.linalg.inv(cov[sets[:, :, None], sets[:, None, :]])  # [m, k, k]
        c = cov[sets]  # [m, k, d]: covariances of each set with every variable
        rss = np.diag(cov)[None] - np.einsum("mkd,mkl,mld->md", c, inv, c)
        score = -n / 2 * np.log(np.maximum(rss, 1e-12)) - k / 2 * np.log(n)  # [m, d]
        masks = (1 << sets).sum(1)
        inside = np.zeros((len(sets), d), bool)
        inside[np.arange(len(sets))[:, None], sets] = True
        s[:, masks] = np.where(inside, -np.inf, score).T
    return s


# Each variable's additive basis: itself and sin, cos at these frequencies of its z-score (smooth,
# deterministic, and a rich enough family for monotone, saturating and bumped responses).
FREQUENCIES = (0.5, 1.0, 2.0)
_CHUNK = 4000  # parent sets solved at once (memory: CHUNK (k b)^2 floats)


def additive_scores(x: Float[np.ndarray, "n d"], max_parents: int) -> Float[np.ndarray, "d M"]:
    """s[i, mask]: log of the average of two models' BIC evidence for x_i given the variables in
    `mask`: linear (`local_scores`) and additive, x_i = sum_j f_j(x_j) + noise with each f_j in
    the span of x_j and sin, cos(w x_j) (w in FREQUENCIES; 7 coefficients a parent). A Bayesian
    who doubts linearity averages the two; on linear data the additive fit's extra coefficients
    cost it log n / 2 each, so the linear score rules, and on nonlinear data the better fit does."""
    n, d = x.shape
    linear = local_scores(x, max_parents)
    z = (x - x.mean(0)) / x.std(0)
    w = np.asarray(FREQUENCIES)
    basis = np.concatenate([z[..., None], np.sin(z[..., None] * w), np.cos(z[..., None] * w)], 2)
    basis -= basis.mean(0)
    b = basis.shape[2]
    phi = basis.reshape(n, d * b)  # column j * b + c: basis function c of variable j
    gram, cross, yy = phi.T @ phi, phi.T @ z, (z**2).sum(0)
    additive = linear.copy()
    for k in range(1, min(max_parents, d - 1) + 1):
        sets = np.asarray(list(combinations(range(d), k)))  # [m, k]
        cols = (sets[:, :, None] * b + np.arange(b)).reshape(len(sets), k * b)
        for c in range(0, len(sets), _CHUNK):
            idx = cols[c:c + _CHUNK]
            a = gram[idx[:, :, None], idx[:, None, :]] + 1e-9 * n * np.eye(k * b)  # [m, kb, kb]
            rhs = cross[idx]  # [m, kb, d]: every variable as the response at once
            rss = yy - np.einsum("mfd,mfd->md", rhs, np.linalg.solve(a, rhs))
            score = -n / 2 * np.log(np.maximum(rss / n, 1e-12)) - k * b / 2 * np.log(n)
            masks = (1 << sets[c:c + _CHUNK]).sum(1)
            additive[:, masks] = np.where(np.isfinite(linear[:, masks]), score.T, -np.inf)
    with np.errstate(invalid="ignore"):  # -inf - -inf: sets holding the variable stay -inf
        return np.where(np.isfinite(linear), np.logaddexp(linear, additive) - np.log(2), -np.inf)


Scores = Callable[[np.ndarray, int], np.ndarray]  # (x [n, d], max_parents) -> s [d, 2^d]


def _zeta(a: Float[np.ndarray, "d M"]) -> Float[np.ndarray, "d M"]:
    """a[i, U] <- log sum over subsets S of U of exp a[i, S], one bit at a time."""
    d = a.shape[0]
    a = a.copy()
    for b in range(d):
        v = a.reshape(d, -1, 2, 1 << b)
        np.logaddexp(v[:, :, 1], v[:, :, 0], out=v[:, :, 1])
    return a


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(a - m).sum(axis)) + m.squeeze(axis)


def default_max_parents(d: int, sets: int = 60_000) -> int:
    """The largest parent-set size whose sets (of all d variables) number at most `sets`: every
    set at 12 variables, 5 parents at 20 (8 with 300,000 sets)."""
    k, total = 0, 1
    while k < d - 1 and total + comb(d, k + 1) <= sets:
        k, total = k + 1, total + comb(d, k + 1)
    return k


def edge_marginals(x: Float[np.ndarray, "n d"], max_parents: int | None = None,
                   scores: Scores = local_scores) -> Float[np.ndarray, "d d"]:
    """P[j, i]: posterior probability of the edge j -> i given observational rows x [n, d], with
    at most `max_parents` parents a variable (default: `default_max_parents(d)`), under the
    local `scores` (linear BIC by default)."""
    n, d = x.shape
    if d > MAX_VARIABLES:
        raise ValueError(f"exact edge marginals take O(d^2 2^d): at most {MAX_VARIABLES} variables, got {d}")
    max_parents = default_max_parents(d) if max_parents is None else max_parents
    full = (1 << d) - 1
    masks = np.arange(full + 1)
    bits = (masks[:, None] >> np.arange(d)) & 1 == 1  # [M, d]
    alpha = _zeta(scores(x, max_parents))  # [d, M]
    below = masks[:, None] ^ (1 << np.arange(d))  # U minus bit i (valid where bit i is set)
    L, R = np.full(full + 1, -np.inf), np.full(full + 1, -np.inf)
    L[0] = R[0] = 0.0
    popcount = bits.sum(1)
    cols = np.arange(d)
    for k in range(1, d + 1):  # sets of k variables from those of k - 1
        U = masks[popcount == k]
        prev = below[U]  # [m, d]
        on = bits[U]
        # L(U): some i in U comes last, its parents inside U \ i
        L[U] = _logsumexp(np.where(on, L[prev] + alpha[cols, prev], -np.inf), 1)
        # R(T), T = U: some k in T comes first after V \ T, its parents inside V \ T
        R[U] = _logsumexp(np.where(on, alpha[:, full ^ U].T + R[prev], -np.inf), 1)
    log_z = L[full]
    P = np.zeros((d, d))
    for i in range(d):
        U = masks[~bits[:, i]]  # i's predecessors
        base = L[U] + R[full ^ U ^ (1 << i)] - log_z
        for j in range(d):
            if j == i:
                continue
            sel = bits[U, j]
            a, without = alpha[i, U[sel]], alpha[i, U[sel] ^ (1 << j)]
            with np.errstate(divide="ignore", invalid="ignore"):  # log(exp a - exp without): sets with j
                beta = np.where(np.isfinite(a), a + np.log1p(-np.exp(np.minimum(without - a, 0.0))), -np.inf)
            P[j, i] = np.exp(_logsumexp(base[sel] + beta, 0))
    return np.clip(P, 0.0, 1.0)
