"""Classical structure-learning baselines: predict a graph from one observational dataset.

- ``pc``: the PC algorithm (Fisher-z tests, stable skeleton), from causal-learn.
- ``ges``: greedy equivalence search with the linear-Gaussian BIC score, from causal-learn.
- ``exact_dp``: exact Bayesian edge marginals over all DAGs (engine.evaluate.bayes_dp: Koivisto &
  Sood's dynamic programme, BIC local scores, order-modular prior), up to 20 variables; its
  graph is the one of highest expected F1 under them, as for the models.
- ``exact_additive``: the same posterior under scores that also consider additive nonlinear
  mechanisms (bayes_dp.additive_scores), with up to 8 parents a variable at 20 variables.
- ``random``: a seeded coin flip per ordered pair, with independent uniform scores (chance level).

`BASELINES` is the one registry: each baseline's name, label, note and price; the spec's
choices, the evaluation's sides, reports and plan estimates all read it.

PC, GES and the exact posteriors assume i.i.d. rows from one distribution, so they take observational rows only;
interventional rows would break their tests and scores. Both return a CPDAG (an equivalence
class); see :func:`predict_graph` for how it becomes edge weights. causal-learn is an optional
extra: ``pip install -e ".[baselines]"``.
"""

from __future__ import annotations

import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np

from engine.evaluate import bayes_dp
from engine.evaluate.decision import expected_f1_graph

_INSTALL = "install it with: pip install -e \".[baselines]\""


@dataclass(frozen=True)
class Baseline:
    """A classical method an evaluation compares with: `label` for tables, `note` for the record
    (what it read and how its answer was scored), `seconds(d)` one graph of d variables at 1,000
    rows (benchmarks/baselines.py; plan estimates), `max_variables` the largest graph it takes."""

    name: str
    label: str
    note: str
    seconds: Callable[[int], float]
    max_variables: int | None = None

    def takes(self, d: int) -> bool:
        """Whether it runs on a graph of d variables."""
        return self.max_variables is None or d <= self.max_variables


_CPDAG = "; an undirected CPDAG edge counts as half an edge in each direction"
BASELINES: dict[str, Baseline] = {b.name: b for b in (
    # PC 0.05 s at 10 nodes, 1.8 s at 50; GES 0.13 s at 10, 3 s at 30, 9 s to over 3 min at 50
    Baseline("pc", "PC", "PC (causal-learn, Fisher-z, alpha 0.05) on the observational rows" + _CPDAG,
             lambda d: 1.5e-5 * d**3),
    Baseline("ges", "GES", "GES (causal-learn, BIC) on the observational rows" + _CPDAG,
             lambda d: 1e-4 * d**3),
    # 0.01 s at 10 variables, 0.28 s at 15, 7.1 s at 20 (benchmarks/baselines.py; O(d^2 2^d))
    Baseline("exact_dp", "exact DP", "exact Bayesian edge marginals over all DAGs (dynamic "
             "programme, BIC scores, order-modular prior) on the observational rows; its graph is "
             "the expected-F1 decision", lambda d: 0.01 + 2.5e-8 * d**2 * 2.0**d, bayes_dp.MAX_VARIABLES),
    # 0.07 s at 10 variables, 3.1 s at 15 (every parent set), 23 s at 20 (up to 8 parents;
    # benchmarks/baselines.py): interpolated in log time
    Baseline("exact_additive", "exact additive", "exact Bayesian edge marginals over all DAGs "
             "(dynamic programme, order-modular prior) whose local scores average the linear and "
             "an additive nonlinear model's BIC evidence, up to 8 parents at 20 variables, on the "
             "observational rows; its graph is the expected-F1 decision",
             lambda d: float(np.exp(np.interp(d, (2, 10, 15, 20), np.log((0.005, 0.07, 3.1, 23.4))))),
             bayes_dp.MAX_VARIABLES),
    Baseline("random", "random", "independent edges at this stage's true edge density (which it "
             "is told); uniform random scores", lambda d: 0.0),
)}


# name -> (local scores, parent sets the variables' families may number at most)
_EXACT = {"exact_dp": (bayes_dp.local_scores, 60_000), "exact_additive": (bayes_dp.additive_scores, 300_000)}


class BaselineUnavailable(RuntimeError):
    """A baseline's library is missing; the message says what to install."""


class BaselineNotRun(RuntimeError):
    """A baseline did not answer on this graph (the evaluation counts it as not run)."""


class BaselineTimeout(BaselineNotRun):
    """A baseline ran past its time limit and was stopped."""


class BaselineTooLarge(BaselineNotRun):
    """The graph has more variables than the baseline takes."""


@contextmanager
def _time_limit(seconds: float | None):
    """Raise BaselineTimeout in the block after `seconds` (a real-time timer). PC and GES are
    Python loops, so the signal stops them between steps; GES's search grows steeply with size
    and density (one dense 30-variable graph ran over 10 minutes). Off the main thread, where
    signals cannot be delivered, there is no limit.

    The handler re-arms itself every 50 ms until the block is left: a handler that runs inside a
    garbage-collector callback (JAX registers one) has its exception ignored, and a one-shot
    timer then let GES run on for minutes."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    active = True

    def stop(*_):
        if active:
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            raise BaselineTimeout(f"stopped after {seconds:g} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        active = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass(frozen=True)
class GraphPrediction:
    """weights [d, d] in [0, 1]: the prediction for F1 / SHD (W[i, j] for i -> j, zero diagonal);
    scores [d, d]: for ranking metrics (AUROC, AP); seconds: wall time of the algorithm alone."""

    weights: np.ndarray
    scores: np.ndarray
    seconds: float


def _causallearn():
    """(pc, ges) from causal-learn, or BaselineUnavailable saying what to install."""
    try:
        from causallearn.search.ConstraintBased.PC import pc
        from causallearn.search.ScoreBased.GES import ges
    except ImportError as e:
        raise BaselineUnavailable(f"causal-learn is not installed ({e}); {_INSTALL}") from e
    return pc, ges


def available(name: str) -> str | None:
    """None when the baseline can run here, else the reason (and what to install)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {tuple(BASELINES)}")
    if name == "random" or name in _EXACT:
        return None
    try:
        _causallearn()
    except BaselineUnavailable as e:
        return str(e)
    return None


def _cpdag_weights(g: np.ndarray) -> np.ndarray:
    """causal-learn endpoint matrix -> weights.

    causal-learn: g[j, i] == 1 and g[i, j] == -1 means i -> j (tail at i, arrowhead at j);
    -1/-1 is i -- j, 1/1 is i <-> j. A directed edge gives 1 one way; any other adjacency
    (undirected, bidirected, conflicting) gives 0.5 both ways.
    """
    directed = (g == -1) & (g.T == 1)
    adjacent = (g != 0) | (g.T != 0)
    w = directed.astype(np.float64)
    w[adjacent & ~directed & ~directed.T] = 0.5
    np.fill_diagonal(w, 0.0)
    return w


def _varying(obs: np.ndarray) -> np.ndarray:
    """The columns that vary. A constant one breaks Fisher-z (singular correlation) and BIC (log
    of zero variance); it carries no information about edges, so it gets none."""
    return np.flatnonzero(obs.std(axis=0) > 1e-12 * np.maximum(1.0, np.abs(obs).max(axis=0)))


def _run_causallearn(name: str, obs: np.ndarray, alpha: float, limit: float | None) -> tuple[np.ndarray, float]:
    pc, ges = _causallearn()
    n, d = obs.shape
    w = np.zeros((d, d))
    keep = _varying(obs)
    sd = obs.std(axis=0)
    if keep.size < 2:
        return w, 0.0
    # Fisher-z and BIC are scale-invariant in theory, but causal-learn's GES (covariance
    # inverses) is better conditioned on unit-variance columns; PC gets the same input
    x = (obs[:, keep] - obs[:, keep].mean(axis=0)) / sd[keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "features much larger than sample size", pdinv via svd
        t0 = time.perf_counter()
        with _time_limit(limit):
            if name == "pc":
                g = pc(x, alpha, "fisherz", stable=True, show_progress=False, verbose=False).G.graph
            else:
                g = ges(x, score_func="local_score_BIC")["G"].graph
        seconds = time.perf_counter() - t0
    w[np.ix_(keep, keep)] = _cpdag_weights(np.asarray(g))
    return w, seconds


def predict_graph(
    name: str,
    obs: np.ndarray,
    seed: int,
    density: float | None = None,
    alpha: float = 0.05,
    limit: float | None = None,
) -> GraphPrediction:
    """Predict a graph from observational rows obs [n, d] (real variables only, no padding).

    pc / ges: the CPDAG as weights: a directed edge i -> j gives W[i, j] = 1, W[j, i] = 0; an
    undirected (or bidirected / conflicting) edge gives 0.5 both ways, so it counts as half an
    edge in either direction. scores == weights. Both are deterministic: ``seed`` is unused.
    ``alpha`` is PC's significance level (GES ignores it).

    random: weights[i, j] = 1 with probability ``density`` (the expected share of ordered
    off-diagonal pairs that are edges; required), independently; scores[i, j] ~ U(0, 1) i.i.d.,
    independent of the weights, so ranking metrics sit at chance. Seeded by ``seed``.

    exact_dp / exact_additive: scores = the exact posterior edge marginals (engine.evaluate.bayes_dp)
    under linear / linear-or-additive local scores, weights = the graph of highest expected F1
    under them.

    Raises BaselineUnavailable when pc / ges run without causal-learn installed,
    BaselineTimeout when a baseline runs past ``limit`` seconds (None: no limit) and
    BaselineTooLarge when the graph has more variables than it takes.
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {tuple(BASELINES)}")
    obs = np.asarray(obs, dtype=np.float64)
    if obs.ndim != 2:
        raise ValueError(f"obs must be [n, d], got shape {obs.shape}")
    if not np.isfinite(obs).all():
        raise ValueError("obs has non-finite values")
    d = obs.shape[1]
    off = ~np.eye(d, dtype=bool)

    if name == "random":
        if density is None or not 0.0 <= density <= 1.0:
            raise ValueError(f"random needs density in [0, 1], got {density}")
        t0 = time.perf_counter()
        rng_w, rng_s = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
        weights = ((rng_w.random((d, d)) < density) & off).astype(np.float64)
        scores = rng_s.random((d, d)) * off
        return GraphPrediction(weights, scores, time.perf_counter() - t0)

    if not BASELINES[name].takes(d):
        raise BaselineTooLarge(f"{d} variables; {name} takes at most {BASELINES[name].max_variables}")
    if name in _EXACT:
        return _exact(obs, limit, *_EXACT[name])
    weights, seconds = _run_causallearn(name, obs, alpha, limit)
    return GraphPrediction(weights, weights.copy(), seconds)


def _exact(obs: np.ndarray, limit: float | None, local: bayes_dp.Scores, sets: int) -> GraphPrediction:
    d = obs.shape[1]
    keep = _varying(obs)
    scores = np.zeros((d, d))
    t0 = time.perf_counter()
    if keep.size >= 2:
        with _time_limit(limit):
            k = bayes_dp.default_max_parents(keep.size, sets)
            scores[np.ix_(keep, keep)] = bayes_dp.edge_marginals(obs[:, keep], k, local)
    seconds = time.perf_counter() - t0
    return GraphPrediction(expected_f1_graph(scores), scores, seconds)
