"""Datasets acbo did not generate: plain NumPy samplers written apart from engine/scm, with their
own parameter laws, for judging models on data outside their training distribution.

Every sampler returns a `Dataset`: observational rows, optional interventional rows with their
mask, and the true adjacency (adj[i, j]: i -> j), variables in a random order.

- linear: ER DAGs with 2 edges per node in expectation; weights +-U(0.5, 2); Gaussian noise
  with per-variable scale U(0.5, 1.5) (so variances are not one law, unlike acbo's unit noise).
- rff: the same graphs; each child is a random Fourier-feature function of its parents
  (100 features, length scale U(1, 2.5) in the parents' own standard units, output scale so the
  signal carries a share U(0.6, 0.9) of the child's variance) plus Gaussian noise.
- grn: SERGIO-style steady-state gene expression: master regulators with production rates per
  cell type (3 types), targets driven by Hill functions (coefficient 2, activation or repression,
  strength U(1, 5), half-response at the regulator's mean), multiplicative intrinsic noise, then
  the technical layers (outlier genes, lognormal library sizes, percentile dropout) and Poisson
  UMI counts. Knock-outs set a gene's production to 0.
- bnlearn: the four Gaussian networks in ../shared/data/bnlearn with their published parameters.

Interventions (`rows_per_node`): hard do(x_i = v) on every variable in turn, v ~ U(-3, 3) in
the variable's observational standard units (knock-outs for grn).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

BNLEARN = Path(__file__).resolve().parents[2] / "shared" / "data" / "bnlearn"
NETWORKS = ("ecoli70", "magic-niab", "magic-irri", "arth150")


@dataclass(frozen=True)
class Dataset:
    obs: np.ndarray  # [n, d]
    adjacency: np.ndarray  # [d, d] bool, i -> j
    rows: np.ndarray  # [k, d] interventional rows (k may be 0)
    mask: np.ndarray  # [k, d] bool: which variable each row intervened on
    counts: bool = False  # UMI counts (grn): models and baselines read log2 counts per million


def er_dag(d: int, rng, edges_per_node: float = 2.0) -> np.ndarray:
    p = min(1.0, 2 * edges_per_node / (d - 1))
    return np.triu(rng.random((d, d)) < p, 1)  # in topological order 0..d-1


def _permute(data: Dataset, perm) -> Dataset:
    return Dataset(data.obs[:, perm], data.adjacency[np.ix_(perm, perm)], data.rows[:, perm],
                   data.mask[:, perm], data.counts)


def _intervened(d: int, rows_per_node: int) -> np.ndarray:
    mask = np.zeros((d * rows_per_node, d), bool)
    mask[np.arange(d * rows_per_node), np.repeat(np.arange(d), rows_per_node)] = True
    return mask


def _sample_sem(adj, mechanisms, noise_scale, n, rng, mask=None, values=None):
    """Ancestral sampling in topological order 0..d-1; rows with mask[:, j] take values[:, j]."""
    d = adj.shape[0]
    x = np.zeros((n, d))
    for j in range(d):
        x[:, j] = mechanisms[j](x[:, adj[:, j]]) + noise_scale[j] * rng.normal(size=n)
        if mask is not None:
            x[:, j] = np.where(mask[:, j], values[:, j], x[:, j])
    return x


def _scm(kind: str, adj: np.ndarray, rng):
    d = adj.shape[0]
    noise = rng.uniform(0.5, 1.5, d)
    mechanisms = []
    if kind == "linear":
        w = rng.uniform(0.5, 2.0, (d, d)) * rng.choice([-1.0, 1.0], (d, d))
        for j in range(d):
            mechanisms.append(lambda xp, wj=w[adj[:, j], j]: xp @ wj)
        return mechanisms, noise
    # rff: fitted to the parents' scale on a pilot sample, ancestrally
    pilot = np.zeros((2000, d))
    for j in range(d):
        k = int(adj[:, j].sum())
        if k == 0:
            f = lambda xp: np.zeros(len(xp))  # noqa: E731
        else:
            par = pilot[:, adj[:, j]]
            mu, sd = par.mean(0), par.std(0) + 1e-9
            omega = rng.normal(size=(k, 100)) / rng.uniform(1.0, 2.5)
            phase = rng.uniform(0, 2 * np.pi, 100)
            a = rng.normal(size=100)
            raw = lambda xp, mu=mu, sd=sd, om=omega, ph=phase, a=a: np.cos(((xp - mu) / sd) @ om + ph) @ a
            share = rng.uniform(0.6, 0.9)
            scale = noise[j] * np.sqrt(share / (1 - share)) / (raw(par).std() + 1e-9)
            f = lambda xp, raw=raw, scale=scale: scale * raw(xp)
        mechanisms.append(f)
        pilot[:, j] = f(pilot[:, adj[:, j]]) + noise[j] * rng.normal(size=2000)
    return mechanisms, noise


def continuous(kind: str, d: int, n: int, seed: int, rows_per_node: int = 0,
               edges_per_node: float = 2.0) -> Dataset:
    """`kind` "linear" or "rff" on an ER graph of d variables (2 edges per node unless said): n
    observational rows and d * rows_per_node interventional ones."""
    rng = np.random.default_rng(seed)
    adj = er_dag(d, rng, edges_per_node)
    perm = rng.permutation(d)  # drawn first: the observational rows do not depend on rows_per_node
    mechanisms, noise = _scm(kind, adj, rng)
    obs = _sample_sem(adj, mechanisms, noise, n, rng)
    mask = _intervened(d, rows_per_node)
    values = obs.mean(0) + obs.std(0) * rng.uniform(-3, 3, mask.shape)
    rows = _sample_sem(adj, mechanisms, noise, len(mask), rng, mask, values) if len(mask) else np.zeros((0, d))
    return _permute(Dataset(obs, adj, rows, mask), perm)


def _technical(expr: np.ndarray, rng) -> np.ndarray:
    """SERGIO's technical noise on expression [cells, genes] -> UMI counts."""
    n, d = expr.shape
    outlier = rng.random(d) < 0.01
    expr = expr * np.where(outlier, rng.lognormal(5.0, 0.4, d), 1.0)
    lib = rng.lognormal(4.5, 0.3, n)
    expr = expr / np.maximum(expr.sum(1, keepdims=True), 1e-9) * lib[:, None] * d
    log_expr = np.log1p(expr)
    cutoff = np.percentile(log_expr, rng.uniform(40, 60))
    keep = rng.random((n, d)) >= 1 / (1 + np.exp(-8.0 * (cutoff - log_expr)))
    return rng.poisson(expr * keep).astype(np.float64)


def grn(d: int, n: int, seed: int, rows_per_node: int = 0) -> Dataset:
    """SERGIO-style counts on a scale-free-ish regulatory DAG (ER-2 here) of d genes."""
    rng = np.random.default_rng(seed)
    adj = er_dag(d, rng)
    perm = rng.permutation(d)
    k = rng.uniform(1.0, 5.0, (d, d)) * rng.choice([-1.0, 1.0], (d, d), p=[0.3, 0.7])
    types = 3
    basal = rng.uniform(1.0, 5.0, (types, d))
    mask = _intervened(d, rows_per_node)

    def expression(cells, knock):
        cell_type = rng.integers(0, types, cells)
        x = np.zeros((cells, d))
        half = np.ones(d)
        for j in range(d):
            reg = adj[:, j]
            if not reg.any():
                rate = basal[cell_type, j]
            else:
                h = x[:, reg] ** 2 / (x[:, reg] ** 2 + half[reg] ** 2)
                kj = k[reg, j]
                rate = np.where(kj > 0, kj * h, -kj * (1 - h)).sum(1)
            rate = rate * (1 - knock[:, j])
            x[:, j] = rate * rng.lognormal(0.0, 0.3, cells)
            half[j] = max(x[knock[:, j] == 0, j].mean() if (knock[:, j] == 0).any() else 1.0, 1e-3)
        return x

    obs = _technical(expression(n, np.zeros((n, d))), rng)
    rows = _technical(expression(len(mask), mask.astype(float)), rng) if len(mask) else np.zeros((0, d))
    return _permute(Dataset(obs, adj, rows, mask, counts=True), perm)


def bnlearn(name: str, n: int, seed: int) -> Dataset:
    """n rows of a published Gaussian network: x_j = b_j + sum_i W[i, j] x_i + sigma_j eps_j."""
    net = np.load(BNLEARN / f"{name}_lgbn.npz")
    w, b, sigma, order = net["W"], net["b"], net["sigma"], net["order"]
    rng = np.random.default_rng(seed)
    d = len(b)
    perm = rng.permutation(d)
    x = np.zeros((n, d))
    for j in order:
        x[:, j] = b[j] + x @ w[:, j] + sigma[j] * rng.normal(size=n)
    return _permute(Dataset(x, net["G"].astype(bool), np.zeros((0, d)), np.zeros((0, d), bool)), perm)


def log_cpm(counts: np.ndarray) -> np.ndarray:
    """log2(1 + counts per million), per row (cell)."""
    return np.log2(1.0 + counts / np.maximum(counts.sum(1, keepdims=True), 1.0) * 1e6)
