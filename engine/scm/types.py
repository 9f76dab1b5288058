"""The data contract between the simulator, the expert and the demonstrations.

Every array is padded to ``d`` = the largest graph size of the spec; ``var_mask`` marks the real
variables. A batch of graphs is the same module with a leading graph axis on every array leaf, so
``jax.vmap`` maps a per-graph function over it.
"""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array, Bool, Float, Int


class Dataset(eqx.Module):
    """Observational rows and interventional rows with their indicator mask.

    obs:          [n_obs, d]  observational samples (padded variables are 0)
    int_values:   [n_int, d]  interventional samples
    int_mask:     [n_int, d]  True where that row's variable was intervened on (model channel 1)
    int_row_mask: [n_int]     True for real rows (row counts vary with graph size)
    """

    obs: Float[Array, "n_obs d"]
    int_values: Float[Array, "n_int d"]
    int_mask: Bool[Array, "n_int d"]
    int_row_mask: Bool[Array, " n_int"]
