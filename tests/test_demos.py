"""Demonstrations: split by graph, snapshot schedule, batches that match the stored trajectories."""

import numpy as np
import pytest

from engine.data.demos import SPLITS, build_split, gather, snapshot_steps, split_graphs


def _fake(n_graphs=20, d=5, n_obs=7, k=6, seed=0):
    rng = np.random.default_rng(seed)
    var_mask = np.ones((n_graphs, d), bool)
    var_mask[::2, -1] = False
    data = {
        "obs": rng.normal(size=(n_graphs, n_obs, d)).astype(np.float32),
        "var_mask": var_mask,
        "target": np.zeros(n_graphs, np.int32),
        "parents": rng.random((n_graphs, d)) < 0.3,
    }
    data["adjacency"] = np.zeros((n_graphs, d, d), bool)
    data["adjacency"][:, :, 0] = data["parents"]
    rows_valid = np.ones((n_graphs, k), bool)
    rows_valid[:, -1] = False  # padding row
    traj = {
        "rows_values": rng.normal(size=(n_graphs, k, d)).astype(np.float32),
        "rows_mask": rng.random((n_graphs, k, d)) < 0.2,
        "rows_valid": rows_valid,
        "marginals": rng.random((n_graphs, k + 1, d)).astype(np.float32),
    }
    return data, traj


@pytest.mark.parametrize("n,frac", [(100, (0.8, 0.1, 0.1)), (7, (0.5, 0.25, 0.25)), (200, (0.0, 0.0, 1.0))])
def test_split_is_a_disjoint_partition_of_graphs(n, frac):
    ids = split_graphs(n, dict(zip(SPLITS, frac)), seed=3)
    allids = np.concatenate([ids[s] for s in SPLITS])
    assert sorted(allids.tolist()) == list(range(n))
    for a in SPLITS:
        for b in SPLITS:
            if a != b:
                assert not set(ids[a]) & set(ids[b])
    assert len(ids["heldout"]) == round(frac[2] * n)


def test_heldout_graphs_never_reach_the_training_split():
    data, traj = _fake()
    ids = split_graphs(20, {"train": 0.6, "validation": 0.2, "heldout": 0.2}, seed=0)
    train = build_split(ids["train"], data, traj, demos_per_graph=3)
    held = build_split(ids["heldout"], data, traj, demos_per_graph=3)
    assert not set(np.asarray(train.graph_id).tolist()) & set(np.asarray(held.graph_id).tolist())
    # every array of the training split holds only training graphs' data
    for local, g in enumerate(np.asarray(train.graph_id)):
        np.testing.assert_array_equal(np.asarray(train.obs[local]), data["obs"][g])
    held_obs = {data["obs"][g].tobytes() for g in ids["heldout"]}
    assert not any(np.asarray(train.obs[i]).tobytes() in held_obs for i in range(train.n_graphs))


def test_snapshots_spread_over_the_trajectory_and_end_at_the_final_posterior():
    assert snapshot_steps(14, 1) == [14]
    steps = snapshot_steps(14, 10)
    assert steps[-1] == 14 and steps == sorted(steps) and min(steps) >= 1 and len(steps) == 10


def test_gather_builds_the_prefix_the_expert_had_seen():
    data, traj = _fake()
    demos = build_split(np.arange(20), data, traj, demos_per_graph=2)
    batch = gather(demos, np.arange(demos.n_demos))
    n_obs = data["obs"].shape[1]
    for j in range(demos.n_demos):
        g, k = int(demos.demo_graph[j]), int(demos.demo_k[j])
        used = np.asarray(batch.row_mask[j, n_obs:])
        assert used.sum() == traj["rows_valid"][g, :k].sum()
        np.testing.assert_array_equal(np.asarray(batch.expert[j]), traj["marginals"][g, k])
        np.testing.assert_array_equal(np.asarray(batch.x[j, :n_obs, :, 1]), 0)
        np.testing.assert_array_equal(np.asarray(batch.x[j, n_obs:, :, 1]), traj["rows_mask"][g])
