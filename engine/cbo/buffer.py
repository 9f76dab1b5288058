"""The experience buffer of one causal-BO episode: observational rows and a fixed-capacity log of
interventional rows with their indicators. Pure and jittable: `add` returns a new buffer."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from engine.scm.types import Dataset


class Buffer(eqx.Module):
    """obs [n, d]: observational rows; values/mask [K, d]: interventional rows and indicators, the
    first `count` real (valid [K] says which rows of those count: padding rows of D_I do not).

    Rows past `capacity` are dropped (`add` on a full buffer returns it unchanged): shapes never
    change, so an episode's jitted pieces compile once."""

    obs: Float[Array, "n d"]
    values: Float[Array, "K d"]
    mask: Bool[Array, "K d"]
    valid: Bool[Array, " K"]
    count: Int[Array, ""]

    @classmethod
    def from_dataset(cls, data: Dataset, room: int) -> "Buffer":
        """D_I's rows (padding rows included, not valid), then `room` empty rows for trials."""
        d = data.obs.shape[1]
        n_int = data.int_values.shape[0]
        return cls(
            obs=jnp.asarray(data.obs),
            values=jnp.concatenate([jnp.asarray(data.int_values), jnp.zeros((room, d), data.obs.dtype)]),
            mask=jnp.concatenate([jnp.asarray(data.int_mask, bool), jnp.zeros((room, d), bool)]),
            valid=jnp.concatenate([jnp.asarray(data.int_row_mask, bool), jnp.zeros(room, bool)]),
            count=jnp.asarray(n_int, jnp.int32),
        )

    @property
    def capacity(self) -> int:
        return self.values.shape[0]

    def add(self, row: Float[Array, " d"], mask: Bool[Array, " d"]) -> "Buffer":
        """The buffer with one more interventional row (unchanged when full)."""
        i = self.count
        room = i < self.capacity
        j = jnp.minimum(i, self.capacity - 1)
        keep = lambda old, new: old.at[j].set(jnp.where(room, new, old[j]))  # noqa: E731
        return Buffer(
            obs=self.obs,
            values=keep(self.values, row.astype(self.values.dtype)),
            mask=keep(self.mask, mask.astype(bool)),
            valid=keep(self.valid, jnp.asarray(True)),
            count=i + room.astype(jnp.int32),
        )

    def used(self) -> Bool[Array, " K"]:
        """Interventional rows that hold data: valid and already written."""
        return self.valid & (jnp.arange(self.capacity) < self.count)

    def model_input(self) -> tuple[Float[Array, "N d 2"], Bool[Array, " N"]]:
        """The amortized model's input (value, intervention indicator) over obs then the log, and
        which of those N = n + K rows are real (as `engine.data.demos.gather` builds it)."""
        x = jnp.concatenate([
            jnp.stack([self.obs, jnp.zeros_like(self.obs)], -1),
            jnp.stack([self.values, self.mask.astype(self.values.dtype)], -1),
        ])
        return x, jnp.concatenate([jnp.ones(self.obs.shape[0], bool), self.used()])
