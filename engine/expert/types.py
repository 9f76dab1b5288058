"""What an expert run returns: the rows its posterior consumed, the posterior after each, the trials."""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array, Bool, Float, Int


class Trajectory(eqx.Module):
    """One expert run on one graph (a batch of runs carries a leading graph axis on every leaf).

    K = n_int + n_trials interventional rows, in the order the posterior consumed them: all of
    D_I first, then one fresh full sample per trial. Row k of `marginals` / `set_probs` is the
    posterior after k updates (row 0 = the prior). Rows intervening on the target carry no
    information about its parents and leave the posterior unchanged; so do invalid (padding) rows.

    rows_values: [K, d]    raw values of the consumed interventional rows
    rows_mask:   [K, d]    intervention indicators of those rows
    rows_valid:  [K]       real rows (False for padding rows of D_I)
    marginals:   [K+1, d]  p_i = sum_{S containing i} w_S (0 for the target and padded variables)
    set_probs:   [K+1, S]  w_S after each update (0 for pruned or impossible sets)
    sets:        [S, k]    candidate parent sets as variable indices, padded with -1
    n_init:      []        number of rows from D_I (the first trial's row is row n_init)
    trial_var:   [T]       intervened variable per trial (-1 where no trial was run)
    trial_value: [T]       intervention value (raw units)
    trial_y:     [T]       outcome: mean of `outcome_samples` draws of Y under the intervention
    best_y:      [T]       best (lowest) trial_y so far
    cost:        [T]       cumulative cost (1 per trial)
    """

    rows_values: Float[Array, "K d"]
    rows_mask: Bool[Array, "K d"]
    rows_valid: Bool[Array, " K"]
    marginals: Float[Array, "K1 d"]
    set_probs: Float[Array, "K1 S"]
    sets: Int[Array, "S k"]
    n_init: Int[Array, ""]
    trial_var: Int[Array, " T"]
    trial_value: Float[Array, " T"]
    trial_y: Float[Array, " T"]
    best_y: Float[Array, " T"]
    cost: Float[Array, " T"]
