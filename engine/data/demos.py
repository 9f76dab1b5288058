"""Demonstrations: the plan's TrainingExample, stored per split, batched without copies.

A demonstration is (observational rows, the first k interventional rows an expert consumed with
their indicators, the expert's parent marginals after those k updates, the target, the graph).
For an expert that ran trials those are D_I and its first interventions (see `build_split`).
Graph-level arrays are stored once and demonstrations index them, so 10 snapshots of a
trajectory cost 10 integers, not 10 datasets.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from engine.spec.data import SPLITS, split_counts


class Demonstrations(eqx.Module):
    """One split. G graphs, N demonstrations, padded to d variables and K interventional rows.

    obs [G, n_obs, d]; rows_values, rows_mask [G, K, d]; rows_valid [G, K]; var_mask [G, d];
    target [G]; parents [G, d] (true parents of the target); graph_id [G] (index in the
    simulated batch); demo_graph [N] (index into G); demo_k [N]; expert [N, d] (marginals);
    adjacency [G, d, d] (the whole true graph, adjacency[i, j] = edge i -> j).
    """

    obs: Float[Array, "G n_obs d"]
    rows_values: Float[Array, "G K d"]
    rows_mask: Bool[Array, "G K d"]
    rows_valid: Bool[Array, "G K"]
    var_mask: Bool[Array, "G d"]
    target: Int[Array, " G"]
    parents: Bool[Array, "G d"]
    graph_id: Int[Array, " G"]
    demo_graph: Int[Array, " N"]
    demo_k: Int[Array, " N"]
    expert: Float[Array, "N d"]
    adjacency: Bool[Array, "G d d"]

    @property
    def n_demos(self) -> int:
        return int(self.demo_graph.shape[0])

    @property
    def n_graphs(self) -> int:
        return int(self.graph_id.shape[0])

    def to_numpy(self) -> dict[str, np.ndarray]:
        return {f: np.asarray(getattr(self, f)) for f in self.__dataclass_fields__}

    @classmethod
    def from_numpy(cls, arrays: dict[str, np.ndarray]) -> "Demonstrations":
        return cls(**{f: jnp.asarray(arrays[f]) for f in cls.__dataclass_fields__})

    @classmethod
    def on_host(cls, arrays: dict[str, np.ndarray]) -> "Demonstrations":
        """Demonstrations kept as the given NumPy arrays (memory maps stay maps): training
        streams batches from them (engine.train.sources.DemoStream)."""
        return cls(**{f: arrays[f] for f in cls.__dataclass_fields__})



class Batch(eqx.Module):
    """Model inputs and labels. x [B, n, d, 2] (value, intervention indicator);
    adjacency [B, d, d] the true graph (labels of the graph head)."""

    x: Float[Array, "B n d 2"]
    row_mask: Bool[Array, "B n"]
    var_mask: Bool[Array, "B d"]
    target: Int[Array, " B"]
    parents: Bool[Array, "B d"]
    expert: Float[Array, "B d"]
    adjacency: Bool[Array, "B d d"]


def select(demos: Demonstrations, index) -> Demonstrations:
    """Demonstrations `index` ([N] or [S, N]) with their graphs' arrays, one graph entry per
    demonstration. Generic over where it runs: inside jit with a traced index, or on the host
    with a NumPy index into NumPy arrays or memory maps (which then read only these rows)."""
    g = demos.demo_graph[index]
    return Demonstrations(
        obs=demos.obs[g],
        rows_values=demos.rows_values[g],
        rows_mask=demos.rows_mask[g],
        rows_valid=demos.rows_valid[g],
        var_mask=demos.var_mask[g],
        target=demos.target[g],
        parents=demos.parents[g],
        graph_id=demos.graph_id[g],
        demo_graph=g,  # not read again: demonstration i's graph is entry i
        demo_k=demos.demo_k[index],
        expert=demos.expert[index],
        adjacency=demos.adjacency[g],
    )


def assemble(rows: Demonstrations) -> Batch:
    """Model inputs and labels of `rows`, whose demonstration i sits on graph entry i (as
    `select` gives them): observational rows, then the first k interventional rows with their
    indicators. Jit-able."""
    obs = jnp.asarray(rows.obs)
    values = jnp.asarray(rows.rows_values)
    ind = jnp.asarray(rows.rows_mask).astype(obs.dtype)
    x = jnp.concatenate(
        [
            jnp.stack([obs, jnp.zeros_like(obs)], axis=-1),
            jnp.stack([values, ind], axis=-1),
        ],
        axis=1,
    )
    b, n_obs, n_rows = obs.shape[0], obs.shape[1], values.shape[1]
    k = jnp.asarray(rows.demo_k)
    used = jnp.asarray(rows.rows_valid) & (jnp.arange(n_rows)[None, :] < k[:, None])
    row_mask = jnp.concatenate([jnp.ones((b, n_obs), bool), used], axis=1)
    return Batch(
        x=x,
        row_mask=row_mask,
        var_mask=jnp.asarray(rows.var_mask),
        target=jnp.asarray(rows.target),
        parents=jnp.asarray(rows.parents),
        expert=jnp.asarray(rows.expert),
        adjacency=jnp.asarray(rows.adjacency),
    )


def gather(demos: Demonstrations, index: Int[Array, " B"]) -> Batch:
    """Materialise demonstrations `index` as model inputs (jit-able, a pure gather)."""
    return assemble(select(demos, index))


def snapshot_steps(n_valid: int, count: int) -> list[int]:
    """`count` numbers of consumed rows spread over 1..n_valid, always including n_valid."""
    if n_valid <= 0:
        return [0] * count
    points = np.linspace(n_valid, 0, num=count, endpoint=False)[::-1]
    return [max(1, int(round(p))) for p in points]


def trial_steps(n_trials: int, count: int) -> list[int]:
    """`count` numbers of the expert's trials k (0..n_trials) to demonstrate, ascending.

    count <= n_trials: spread over 1..n_trials, always including n_trials (count = n_trials is
    every trial, count = 1 the last). Beyond that, every k = 0..n_trials (0: D_I alone, the
    posterior before the first trial) once per full round of n_trials + 1, and the remainder
    spread over 1..n_trials as above: rounds repeat only once every step is in.
    """
    rounds, rest = divmod(count, n_trials + 1)
    return sorted(list(range(n_trials + 1)) * rounds + (snapshot_steps(n_trials, rest) if rest else []))


def split_graphs(n_graphs: int, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Disjoint graph indices per split, by a seeded permutation (never by row or demo)."""
    order = np.random.default_rng(seed).permutation(n_graphs)
    counts = split_counts(n_graphs, fractions)
    out, start = {}, 0
    for s in SPLITS:
        out[s] = np.sort(order[start : start + counts[s]])
        start += counts[s]
    return out


def build_split(
    graphs: np.ndarray,
    data: dict[str, np.ndarray],
    trajectory: dict[str, np.ndarray],
    demos_per_graph: int,
) -> Demonstrations:
    """Demonstrations of the graphs `graphs`, from simulated `data` and expert `trajectory`.

    data: obs [G, n_obs, d], var_mask [G, d], target [G], parents [G, d] (all graphs),
    adjacency [G, d, d] (the true graphs);
    trajectory: rows_values, rows_mask [G, K, d], rows_valid [G, K], marginals [G, K+1, d], and
    for an expert that ran trials n_init [G] (rows of D_I; rows n_init.. are its trials, in order).

    With trials, the demonstrations are the expert's own steps: demonstration k holds D_I and
    the first k interventions the expert chose, labelled with its posterior after the k-th
    (marginals[n_init + k]); which k by `trial_steps` (demos_per_graph = T: every trial; 1: the
    last; more than T: D_I alone too, k = 0). Without trials (n_trials = 0, or a trajectory with
    no n_init such as `engine.data.online.truth_trajectory`), `demos_per_graph` snapshots spread
    over the valid rows (`snapshot_steps`).
    """
    demo_graph, demo_k, expert = [], [], []
    n_rows = trajectory["rows_valid"].shape[1]
    for local, g in enumerate(graphs):
        n_init = int(trajectory["n_init"][g]) if "n_init" in trajectory else n_rows
        trials = np.flatnonzero(trajectory["rows_valid"][g, n_init:])  # the trials' rows, in order
        if len(trials) > 0:
            ks = [n_init + (int(trials[k - 1]) + 1 if k > 0 else 0) for k in trial_steps(len(trials), demos_per_graph)]
        else:
            n_valid = int(trajectory["rows_valid"][g].sum())
            valid_positions = np.flatnonzero(trajectory["rows_valid"][g])
            # `steps` valid rows consumed: the row prefix up to the steps-th valid row
            ks = [int(valid_positions[s - 1]) + 1 if s > 0 else 0 for s in snapshot_steps(n_valid, demos_per_graph)]
        for k in ks:
            demo_graph.append(local)
            demo_k.append(k)
            expert.append(trajectory["marginals"][g, k])
    pick = lambda a: np.asarray(a)[graphs]
    adjacency = data["adjacency"]
    return Demonstrations(
        obs=jnp.asarray(pick(data["obs"])),
        rows_values=jnp.asarray(pick(trajectory["rows_values"])),
        rows_mask=jnp.asarray(pick(trajectory["rows_mask"])),
        rows_valid=jnp.asarray(pick(trajectory["rows_valid"])),
        var_mask=jnp.asarray(pick(data["var_mask"])),
        target=jnp.asarray(pick(data["target"]), dtype=jnp.int32),
        parents=jnp.asarray(pick(data["parents"])),
        graph_id=jnp.asarray(graphs, dtype=jnp.int32),
        demo_graph=jnp.asarray(np.array(demo_graph, dtype=np.int32)),
        demo_k=jnp.asarray(np.array(demo_k, dtype=np.int32)),
        expert=jnp.asarray(np.array(expert, dtype=np.float32).reshape(-1, data["obs"].shape[-1])),
        adjacency=jnp.asarray(pick(adjacency).astype(bool)),
    )
