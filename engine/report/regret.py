"""Regret curves of optimization runs: the hook the causal BO loop's results plug into.

`regret_curves(regret)` draws, for each strategy, the mean regret after each trial with a 95%
bootstrap band over episodes, from arrays of shape ``[trials, episodes]`` (column e is episode
e's regret after each trial; NaN where an episode stopped early). :func:`stage_regret` takes
them from an evaluation stage of an ``[optimize]`` problem (its sides' ``best_y`` and the
stage's ``optimum``: simple regret, as the catalog defines it), which is how a run's report
gets the figure; :func:`regret_summary` gives the numbers beside it.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from engine.report.plots import COLOURS, colour, figure, png
from engine.report.run import fmt



def stage_regret(stage) -> dict[str, np.ndarray]:
    """strategy -> [trials, episodes] simple regret (the catalog's curve: best outcome so far
    minus the optimum) of an optimization stage; empty for a stage that is not one."""
    from engine.evaluate.catalog import simple_regret_curve

    if getattr(stage, "optimum", None) is None:
        return {}
    return {name: simple_regret_curve(stage, side).T for name, side in stage.sides.items()
            if side.best_y is not None}


def stage_figure(stage) -> bytes:
    """Regret curves of one optimization stage."""
    regret = stage_regret(stage)
    if not regret:
        raise ValueError(f"stage {stage.name} is not an optimization problem")
    return regret_curves(regret, title=f"{stage.name}: simple regret")


def _check(regret: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for name, a in regret.items():
        a = np.asarray(a, float)
        if a.ndim == 1:
            a = a[:, None]  # one episode
        if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
            raise ValueError(f"regret of {name!r}: expected [trials, episodes], got shape {a.shape}")
        if np.isfinite(a).any():
            out[str(name)] = a
    if not out:
        raise ValueError("no regret values to plot")
    return out


def mean_band(a: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95):
    """(mean, low, high) per trial over episodes: the mean of the finite entries and its
    percentile-bootstrap interval, episodes resampled (the same resamples for every trial)."""
    trials, episodes = a.shape
    ok = np.isfinite(a)
    v = np.where(ok, a, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = v.sum(1) / ok.sum(1)
        rng = np.random.default_rng(seed)
        w = np.stack([np.bincount(rng.integers(0, episodes, episodes), minlength=episodes)
                      for _ in range(n_boot)]).astype(float)  # [n_boot, episodes]
        boot = (w @ v.T) / (w @ ok.T.astype(float))  # [n_boot, trials]
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(boot, [tail, 100 - tail], axis=0) if episodes > 1 else (mean, mean)
    return mean, low, high


def regret_curves(regret: Mapping[str, np.ndarray], title: str = "Regret per trial",
                  cumulative: bool = False, log: bool | None = None, n_boot: int = 1000,
                  seed: int = 0) -> bytes:
    """Mean regret after each trial of every strategy with its 95% band over episodes.

    regret[strategy]: [trials, episodes]. `cumulative` sums each episode's regret over trials
    first. `log` y: by default when every mean is positive and they span two decades."""
    curves = _check(regret)
    fig = figure(6.4, 3.8)
    ax = fig.add_subplot()
    extras = [k for k in curves if k not in COLOURS]
    means = []
    for name, a in curves.items():
        if cumulative:
            a = np.nancumsum(a, 0) + np.where(np.isfinite(a), 0.0, np.nan)
        mean, low, high = mean_band(a, n_boot, seed)
        x = np.arange(1, a.shape[0] + 1)
        c = colour(name, extras)
        ax.plot(x, mean, color=c, lw=1.5, label=f"{name} (final {fmt(float(mean[-1]))}, "
                                                f"{a.shape[1]} episodes)")
        ax.fill_between(x, low, high, color=c, alpha=0.2, lw=0)
        means.append(mean[np.isfinite(mean)])
    allm = np.concatenate(means)
    if log is None:
        log = bool(allm.size and (allm > 0).all() and allm.max() / allm.min() > 100)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("trial")
    ax.set_ylabel("cumulative regret" if cumulative else "regret")
    ax.set_title(f"{title} (mean; band: 95% bootstrap interval over episodes)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper right")
    return png(fig)


def regret_summary(regret: Mapping[str, np.ndarray], n_boot: int = 1000, seed: int = 0) -> dict:
    """strategy -> {final: (mean, low, high) after the last trial, trials, episodes}."""
    out = {}
    for name, a in _check(regret).items():
        mean, low, high = mean_band(a, n_boot, seed)
        out[name] = {"final": (float(mean[-1]), float(low[-1]), float(high[-1])),
                     "trials": a.shape[0], "episodes": a.shape[1]}
    return out
