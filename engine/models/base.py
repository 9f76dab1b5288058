"""The interface every amortized model implements (Equinox's abstract/final pattern)."""

from __future__ import annotations

import abc

import equinox as eqx
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray


class AmortizedPredictor(eqx.Module):
    """Maps a padded dataset [n, d, 2] (value, intervention indicator) to structure logits.

    Concrete models are final: they implement these three heads and are not subclassed further.
    Every head is independent of d, so a model trained at d <= 8 runs at d = 20.
    """

    @property
    def parents_from_graph(self) -> bool:
        """Whether the parent head is a column of the graph head (then a loss with a graph term
        reads both from one graph pass)."""
        return False

    @abc.abstractmethod
    def __call__(
        self,
        x: Float[Array, "n d 2"],
        row_mask: Bool[Array, " n"],
        var_mask: Bool[Array, " d"],
        target: Int[Array, ""],
        *,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, " d"]:
        """Parent logits of `target`; the target and padded variables get a very negative logit."""

    @abc.abstractmethod
    def graph(
        self, x: Float[Array, "n d 2"], row_mask: Bool[Array, " n"], var_mask: Bool[Array, " d"],
        *, key: PRNGKeyArray | None = None,
    ) -> Float[Array, "d d"]:
        """Edge logits [i, j] of i -> j; diagonal and padded entries very negative."""

    @abc.abstractmethod
    def intervened(
        self, x: Float[Array, "n d 2"], row_mask: Bool[Array, " n"], var_mask: Bool[Array, " d"],
        *, key: PRNGKeyArray | None = None,
    ) -> Float[Array, "n d"]:
        """Logit that each (row, variable) cell was intervened on, from the values alone."""
