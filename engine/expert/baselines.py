"""Baseline experts: CBO given the true parents (`oracle`) and random interventions (`random`).

Both run on PARENT_SCALE's episode runner (engine.cbo.episode, composed in engine.expert.loop)
and return the same Trajectory: the oracle is OracleSurrogate + ExpectedImprovement, its belief
the true parent set with probability 1 (its marginals are the true parent indicator); random is
NullSurrogate + RandomAcquisition, with no belief (marginals 0, its one "set" is the empty set).
"""

from __future__ import annotations

from typing import Any

from engine.expert.loop import run_episode, run_many_sequential
from engine.expert.types import Trajectory
from engine.scm.types import Dataset


class _Baseline:
    kind: str = ""

    def __init__(self, spec: Any):
        self.spec = spec

    def run(self, key, scm, data: Dataset) -> Trajectory:
        """One graph: `n_trials` trials (SCM's adjacency gives the oracle its parents)."""
        return run_episode(self.spec, key, scm, data, kind=self.kind)

    def run_many(self, key, scms, datas: Dataset) -> Trajectory:
        """A batch of graphs, one after another (use runner.run_graphs for processes)."""
        return run_many_sequential(self, key, scms, datas)


class Oracle(_Baseline):
    """CBO with the causal GP of the true parent set."""

    kind = "oracle"


class RandomExpertRuntime(_Baseline):
    """A uniform non-target variable at a uniform value of its observational range."""

    kind = "random"
