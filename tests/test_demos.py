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


def test_trial_steps_schedule():
    from engine.data.demos import trial_steps

    assert trial_steps(10, 10) == list(range(1, 11))  # one per trial
    assert trial_steps(10, 1) == [10]  # the final demonstration
    few = trial_steps(10, 4)
    assert few[-1] == 10 and len(set(few)) == 4 and min(few) >= 1
    assert trial_steps(3, 4) == [0, 1, 2, 3]  # D_I alone before any repeat
    assert trial_steps(3, 6) == [0, 1, 2, 2, 3, 3]  # then the remainder spread over 1..T


@pytest.fixture(scope="module")
def expert_run(tmp_path_factory):
    """A real (tiny) PARENT_SCALE run with trials on two graphs, merged as the expert stage does."""
    import jax
    import jax.numpy as jnp

    from engine.expert.runner import merge_artifacts, run_graphs
    from engine.expert.toy import make_dataset, random_linear_scm
    from engine.spec.expert import ParentScaleExpert

    rng = np.random.default_rng(1)
    scms = [random_linear_scm(rng, 4, d_pad=5) for _ in range(2)]  # one padded variable
    datas = [make_dataset(s, jax.random.PRNGKey(i), n_obs=50) for i, s in enumerate(scms)]
    stack = lambda xs: jax.tree.map(lambda *a: jnp.stack(a), *xs)  # noqa: E731
    spec = ParentScaleExpert(kind="parent_scale", prior={"kind": "uniform", "max_parents": 2}, n_trials=3,
                             outcome_samples=50, n_anchors=16, opt_steps=4)
    paths = run_graphs(spec.build(), jax.random.PRNGKey(0), stack(scms), stack(datas), tmp_path_factory.mktemp("expert"))
    traj = merge_artifacts(paths)
    d = traj["rows_values"].shape[-1]
    adjacency = np.stack([np.asarray(s.adjacency) != 0 for s in scms])
    target = np.asarray([int(s.target) for s in scms])
    data = {
        "obs": np.stack([np.asarray(x.obs) for x in datas]),
        "var_mask": np.stack([np.asarray(s.var_mask, bool) for s in scms]),
        "target": target,
        "parents": adjacency[np.arange(2), :, target],
        "adjacency": adjacency,
    }
    assert data["obs"].shape[-1] == d
    return data, traj, 3


def test_demonstrations_are_the_experts_own_interventions(expert_run):
    data, traj, T = expert_run
    demos = build_split(np.arange(2), data, traj, demos_per_graph=T)
    batch = gather(demos, np.arange(demos.n_demos))
    n_obs = data["obs"].shape[1]
    assert demos.n_demos == 2 * T
    for j in range(demos.n_demos):
        g = int(demos.demo_graph[j])
        k = j % T + 1  # the k-th demonstration of graph g
        n_init = int(traj["n_init"][g])
        used = np.asarray(batch.row_mask[j, n_obs:])
        rows = np.asarray(batch.x[j, n_obs:])[used]  # [rows, d, 2]: value, indicator
        init_valid = traj["rows_valid"][g, :n_init]
        # D_I, then exactly the first k interventions the expert chose
        assert len(rows) == init_valid.sum() + k
        np.testing.assert_array_equal(rows[: init_valid.sum(), :, 0], traj["rows_values"][g, :n_init][init_valid])
        np.testing.assert_array_equal(rows[: init_valid.sum(), :, 1], traj["rows_mask"][g, :n_init][init_valid])
        chosen = rows[init_valid.sum():]
        tv, tx = traj["trial_var"][g, :k], traj["trial_value"][g, :k]
        np.testing.assert_array_equal(chosen[:, :, 1], np.eye(chosen.shape[1])[tv])
        np.testing.assert_allclose(chosen[np.arange(k), tv, 0], tx, atol=1e-6)
        # labelled with the expert's posterior after its k-th intervention
        np.testing.assert_array_equal(np.asarray(batch.expert[j]), traj["marginals"][g, n_init + k])
    # one demonstration per graph is the final one
    last = build_split(np.arange(2), data, traj, demos_per_graph=1)
    np.testing.assert_array_equal(np.asarray(last.demo_k), traj["n_init"] + T)
    np.testing.assert_array_equal(np.asarray(last.expert), traj["marginals"][:, -1])
    # more than T: D_I alone first (the posterior before any trial)
    more = build_split(np.arange(2), data, traj, demos_per_graph=T + 1)
    np.testing.assert_array_equal(np.asarray(more.demo_k[:: T + 1]), traj["n_init"])


def test_expert_artifacts_carry_run_seconds(expert_run):
    _, traj, _ = expert_run
    assert traj["run_seconds"].shape == (2,) and np.all(traj["run_seconds"] > 0)
    assert np.all((traj["compile_seconds"] >= 0) & (traj["compile_seconds"] <= traj["run_seconds"]))


def test_without_trials_snapshots_stay_spread_over_rows():
    data, traj = _fake()
    traj = dict(traj, n_init=np.full(20, traj["rows_valid"].shape[1]))  # a posterior-only expert
    with_n = build_split(np.arange(20), data, traj, demos_per_graph=3)
    without = build_split(np.arange(20), data, {k: v for k, v in traj.items() if k != "n_init"}, demos_per_graph=3)
    np.testing.assert_array_equal(np.asarray(with_n.demo_k), np.asarray(without.demo_k))
    assert sorted(set(np.asarray(without.demo_k).tolist())) == [2, 3, 5]  # 5 valid rows: 2, 3, 5 of them
