"""The two small interfaces of a causal-BO episode, in the style of optax's init/update pairs.

A `Surrogate` turns the buffer into a belief over the target's parents (the expert's Bayesian
update, an amortized model's forward pass, or the oracle's true parents). An `Acquisition` picks
the next intervention from the belief and the buffer: `init` builds its state once per episode,
`select` returns (variable, value, state), `observe` folds in the outcome. The episode runner
(`engine.cbo.episode`) knows only these two interfaces; states are pytrees, so a strategy may be
pure JAX (jit/vmap) or keep host-side caches (the GP tables of EI) in its state.
"""

from __future__ import annotations

from typing import Any, Protocol

import equinox as eqx
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from engine.cbo.buffer import Buffer
from engine.cbo.posterior import ParentSetPosterior


class Problem(eqx.Module):
    """What a strategy may know about the episode: the target to minimise, the real variables,
    the box of allowed intervention values per variable (the observational range, in the
    simulator's standardised units) and the number of trials.

    `parents` (the target's true parents) is for the oracle surrogate only: every other
    strategy must not read it (None where the runner was not given the SCM's graph)."""

    target: Int[Array, ""]
    var_mask: Bool[Array, " d"]
    low: Float[Array, " d"]
    high: Float[Array, " d"]
    n_trials: int = eqx.field(static=True)
    parents: Bool[Array, " d"] | None = None

    @property
    def candidates(self) -> Bool[Array, " d"]:
        """Variables that may be intervened on: real and not the target."""
        import jax.numpy as jnp

        return self.var_mask & (jnp.arange(self.var_mask.shape[0]) != self.target)


class Surrogate(Protocol):
    """Belief over the parent set from the data gathered so far."""

    def init(self, key: PRNGKeyArray, problem: Problem, buffer: Buffer) -> Any:
        """State after the initial data (observational rows and D_I)."""

    def update(self, state: Any, buffer: Buffer) -> Any:
        """State after the buffer's newest row (the runner calls it once per trial)."""

    def posterior(self, state: Any) -> ParentSetPosterior:
        """The current belief."""


class Acquisition(Protocol):
    """Chooses interventions: single-node hard interventions do(X_v = x)."""

    def init(self, key: PRNGKeyArray, problem: Problem, buffer: Buffer, posterior: ParentSetPosterior) -> Any:
        """State at the start of the episode (after D_I)."""

    def select(
        self, state: Any, key: PRNGKeyArray, buffer: Buffer, posterior: ParentSetPosterior
    ) -> tuple[Int[Array, ""], Float[Array, ""], Any]:
        """(variable, value, state): the next intervention, value in standardised units."""

    def observe(
        self, state: Any, var: Int[Array, ""], value: Float[Array, ""], y: Float[Array, ""],
        row: Float[Array, " d"],
    ) -> Any:
        """State after the outcome: y the target's mean under the intervention, row one sample."""
