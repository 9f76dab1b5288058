"""PARENT_SCALE posterior: brute-force Bayes, MAP recovery, the bug-compatible formula, the spec."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.expert import sets as S
from engine.expert.posterior import PosteriorConfig, PosteriorState, log_predictive
from engine.expert.toy import LinearSCM, make_dataset, random_linear_scm
from engine.spec.expert import ParentScaleExpert


def small_scm(d_pad: int = 5) -> LinearSCM:
    # X0 -> X1 -> Y(3) <- X2,  X0 -> X2 ; padded to d_pad variables
    w = np.zeros((d_pad, d_pad), np.float32)
    w[0, 1], w[1, 3], w[2, 3], w[0, 2] = 1.5, 2.0, -1.0, 0.8
    mask = np.arange(d_pad) < 4
    return LinearSCM(jnp.asarray(w), jnp.asarray(mask, jnp.float32), jnp.asarray(mask), jnp.asarray(3))


def brute_force(obs, rows, target, sets, allowed, sy=1.0, st=1.0):
    """p(S | D_O, rows[:k]) for every k, by dense Gaussian marginal likelihoods in float64."""
    obs = np.asarray(obs, np.float64)
    rows = np.asarray(rows, np.float64)
    mean, std = obs.mean(0), obs.std(0)
    std = np.where(std > 0, std, 1.0)
    z_obs, z_rows = (obs - mean) / std, (rows - mean) / std
    y_obs, y_rows = obs[:, target], rows[:, target]
    out = []
    for k in range(len(rows) + 1):
        logml = []
        for s, ok in zip(sets, allowed):
            idx = [i for i in s if i >= 0]
            if not ok:
                logml.append(-np.inf)
                continue
            xo = z_obs[:, idx]
            prec = np.eye(len(idx)) / st**2 + xo.T @ xo / sy**2
            cov = np.linalg.inv(prec)
            mu = cov @ xo.T @ y_obs / sy**2
            xi = z_rows[:k][:, idx]
            c = xi @ cov @ xi.T + sy**2 * np.eye(k)
            r = y_rows[:k] - xi @ mu
            logml.append(-0.5 * (np.linalg.slogdet(2 * np.pi * c)[1] + r @ np.linalg.solve(c, r)))
        logml = np.asarray(logml)
        p = np.exp(logml - logml.max())
        out.append(p / p.sum())
    return np.asarray(out)


def spec(**kw) -> ParentScaleExpert:
    base = dict(kind="parent_scale", prior={"kind": "uniform", "max_parents": 2}, prune_threshold=0.0)
    base.update(kw)
    return ParentScaleExpert.model_validate(base)


def test_posterior_matches_brute_force():
    scm = small_scm()
    data = make_dataset(scm, jax.random.PRNGKey(0), n_obs=50, n_per_var=2)
    traj = spec().build().run(jax.random.PRNGKey(1), scm, data)
    sets = np.asarray(traj.sets)
    allowed = np.asarray(S.allowed_sets(traj.sets, scm.var_mask, scm.target))
    use = np.asarray(data.int_row_mask)
    expect = brute_force(data.obs, np.asarray(data.int_values)[use], 3, sets, allowed)
    got = np.asarray(traj.set_probs)
    # rows not used (padded variable 4) leave the posterior unchanged
    got_used = got[np.concatenate([[0], 1 + np.flatnonzero(use)])]
    np.testing.assert_allclose(got_used, expect, atol=2e-4)
    # marginals are sums over sets containing i; target and padding never parents
    memb = np.asarray(S.membership(traj.sets, 5))
    np.testing.assert_allclose(np.asarray(traj.marginals), got @ memb, atol=1e-5)
    assert np.all(np.asarray(traj.marginals)[:, 3:] == 0)
    assert traj.marginals.shape == (data.int_values.shape[0] + 1, 5)
    assert np.allclose(got.sum(1), 1, atol=1e-5)


def test_map_is_true_parent_set():
    scm = small_scm(d_pad=4)
    data = make_dataset(scm, jax.random.PRNGKey(3), n_obs=200, n_per_var=10)
    traj = spec(prune_threshold=1e-4).build().run(jax.random.PRNGKey(0), scm, data)
    best = np.asarray(traj.sets)[np.argmax(np.asarray(traj.set_probs)[-1])]
    assert sorted(i for i in best if i >= 0) == [1, 2]
    marg = np.asarray(traj.marginals[-1])
    assert marg[1] > 0.9 and marg[2] > 0.9 and marg[0] < 0.1


def test_pruned_sets_never_come_back():
    scm = small_scm(d_pad=4)
    data = make_dataset(scm, jax.random.PRNGKey(4), n_obs=100, n_per_var=5)
    probs = np.asarray(spec(prune_threshold=1e-2).build().run(jax.random.PRNGKey(0), scm, data).set_probs)
    dead = np.cumsum(probs == 0, axis=0) > 0
    assert np.all(probs[dead] == 0)
    assert dead[-1].sum() > dead[0].sum()


def test_bug_compatible_formula():
    rng = np.random.default_rng(0)
    f = 3
    a = rng.normal(size=(2, f, f))
    cov = np.einsum("sij,skj->sik", a, a) + np.eye(f)
    mu = rng.normal(size=(2, f))
    phi = rng.normal(size=(2, f))
    y = 0.7
    st = PosteriorState(jnp.asarray(mu, jnp.float32), jnp.asarray(cov, jnp.float32), jnp.zeros(2))
    got = np.asarray(log_predictive(st, jnp.asarray(phi, jnp.float32), jnp.asarray(y), PosteriorConfig(bug_compatible=True)))
    for s in range(2):
        A = cov[s] + np.outer(phi[s], phi[s])
        m = np.linalg.solve(A, y * phi[s] + cov[s] @ mu[s])
        ref = (-0.5 * np.log(2 * np.pi) + 0.5 * np.linalg.slogdet(cov[s])[1] + 0.5 * m @ A @ m
               - y**2 / 2 - 0.5 * mu[s] @ cov[s] @ mu[s] - 0.5 * np.linalg.slogdet(A)[1])
        assert got[s] == pytest.approx(ref, rel=1e-4, abs=1e-4)
    exact = np.asarray(log_predictive(st, jnp.asarray(phi, jnp.float32), jnp.asarray(y), PosteriorConfig()))
    v = 1 + np.einsum("sf,sfg,sg->s", phi, cov, phi)
    np.testing.assert_allclose(exact, -0.5 * np.log(2 * np.pi * v) - (y - (phi * mu).sum(1)) ** 2 / (2 * v), rtol=1e-4)


def test_run_many_matches_run_and_respects_padding():
    rng = np.random.default_rng(1)
    scms = [random_linear_scm(rng, d, d_pad=6) for d in (4, 6, 5)]
    datas = [make_dataset(s, jax.random.PRNGKey(i), n_obs=60, n_per_var=2) for i, s in enumerate(scms)]
    stack = lambda xs: jax.tree.map(lambda *a: jnp.stack(a), *xs)  # noqa: E731
    expert = spec(prune_threshold=1e-4, prior={"kind": "uniform", "max_parents": 3}).build()
    many = expert.run_many(jax.random.PRNGKey(0), stack(scms), stack(datas))
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    for g in range(3):
        one = expert.run(keys[g], scms[g], datas[g])
        np.testing.assert_allclose(np.asarray(many.marginals[g]), np.asarray(one.marginals), atol=1e-5)
        d_real = int(np.asarray(scms[g].var_mask).sum())
        assert np.all(np.asarray(one.marginals)[:, d_real:] == 0)
        assert np.all(np.asarray(one.marginals)[:, int(scms[g].target)] == 0)


def test_rff_posterior_runs_and_singletons_prior():
    scm = small_scm(d_pad=4)
    data = make_dataset(scm, jax.random.PRNGKey(5), n_obs=100, n_per_var=4)
    traj = spec(features="rff", n_rff=20).build().run(jax.random.PRNGKey(0), scm, data)
    assert np.allclose(np.asarray(traj.set_probs).sum(1), 1, atol=1e-4)
    single = spec(prior={"kind": "uniform_singletons"}).build().run(jax.random.PRNGKey(0), scm, data)
    p0 = np.asarray(single.set_probs[0])
    np.testing.assert_allclose(p0, [1 / 3, 1 / 3, 1 / 3, 0], atol=1e-6)


def test_all_sets_enumeration():
    s = S.all_sets(5, 2)
    assert s.shape == (1 + 5 + 10, 2)
    assert len({tuple(r) for r in s}) == len(s)
    assert S.all_sets(4, 9).shape == (16, 4)
    assert {tuple(sorted(c)) for c in itertools.combinations(range(5), 2)} <= {tuple(r) for r in s}


def test_spec_validation():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="did you mean"):
        ParentScaleExpert.model_validate({"kind": "parent_scale", "prune_treshold": 0.1})
    with pytest.raises(ValidationError):
        ParentScaleExpert.model_validate({"kind": "parent_scale", "prior": {"kind": "uniformm"}})
    assert spec().posterior == "exact"


def test_run_graphs_writes_checksummed_artifacts_and_resumes(tmp_path):
    from engine.expert.runner import load_trajectory, run_graphs

    rng = np.random.default_rng(0)
    scms = [random_linear_scm(rng, 4) for _ in range(3)]
    datas = [make_dataset(s, jax.random.PRNGKey(i), n_obs=50) for i, s in enumerate(scms)]
    stack = lambda xs: jax.tree.map(lambda *a: jnp.stack(a), *xs)  # noqa: E731
    expert = spec().build()
    calls = []
    paths = run_graphs(expert, jax.random.PRNGKey(0), stack(scms), stack(datas), tmp_path,
                       progress=lambda a, b: calls.append(a))
    assert calls[-1] == 3 and all(p.exists() for p in paths)
    paths[1].write_bytes(b"damaged")
    calls.clear()
    run_graphs(expert, jax.random.PRNGKey(0), stack(scms), stack(datas), tmp_path, progress=lambda a, b: calls.append(a))
    assert calls == [2, 3]  # only the damaged graph is recomputed
    again = expert.run(jax.random.fold_in(jax.random.PRNGKey(0), 1), scms[1], datas[1])
    np.testing.assert_allclose(np.asarray(load_trajectory(paths[1]).marginals), np.asarray(again.marginals), atol=1e-6)


def test_artifacts_carry_run_seconds_under_the_checksum(tmp_path):
    from engine.expert.runner import FIELDS, _digest, load_artifact, merge_artifacts, run_graphs

    rng = np.random.default_rng(2)
    scms = [random_linear_scm(rng, 4) for _ in range(3)]
    datas = [make_dataset(s, jax.random.PRNGKey(i), n_obs=50) for i, s in enumerate(scms)]
    stack = lambda xs: jax.tree.map(lambda *a: jnp.stack(a), *xs)  # noqa: E731
    paths = run_graphs(spec().build(), jax.random.PRNGKey(0), stack(scms), stack(datas), tmp_path)
    merged = merge_artifacts(paths)
    # posterior-only: one vmapped chunk, its time shared evenly
    assert merged["run_seconds"].shape == (3,) and np.all(merged["run_seconds"] > 0)
    assert np.ptp(merged["run_seconds"]) == 0
    # the checksum covers the times: a changed time is a damaged file
    with np.load(paths[0]) as z:
        arrays = {k: z[k] for k in z.files if k != "__sha256__"}
    np.savez(paths[0], __sha256__=np.asarray("0" * 64), **dict(arrays, run_seconds=np.asarray(1.0)))
    assert load_artifact(paths[0]) is None
    # a file written before the times existed still loads (NaN times), so a resume keeps it
    old = {f: arrays[f] for f in FIELDS}
    with open(paths[0], "wb") as fh:
        np.savez(fh, __sha256__=np.asarray(_digest(old)), **old)
    traj, extra = load_artifact(paths[0])
    assert np.isnan(extra["run_seconds"]) and np.isnan(extra["compile_seconds"])


def test_doubly_robust_posterior_only_runs_graph_by_graph(tmp_path):
    from engine.expert.runner import merge_artifacts, run_graphs

    rng = np.random.default_rng(3)
    scms = [random_linear_scm(rng, 4) for _ in range(2)]
    datas = [make_dataset(s, jax.random.PRNGKey(i), n_obs=50) for i, s in enumerate(scms)]
    stack = lambda xs: jax.tree.map(lambda *a: jnp.stack(a), *xs)  # noqa: E731
    expert = spec(prior={"kind": "doubly_robust", "n_bootstrap": 2, "hidden": 16, "layers": 1, "max_epochs": 10}).build()
    merged = merge_artifacts(run_graphs(expert, jax.random.PRNGKey(0), stack(scms), stack(datas), tmp_path))
    assert np.all(merged["run_seconds"] > 0) and merged["run_seconds"][0] != merged["run_seconds"][1]  # timed apart
    for g in range(2):
        one = expert.posterior(jax.random.fold_in(jax.random.PRNGKey(0), g), scms[g].var_mask, scms[g].target, datas[g])
        np.testing.assert_allclose(merged["marginals"][g], np.asarray(one.marginals), atol=1e-6)


def _affinity(_):
    import os
    import time

    time.sleep(0.3)  # long enough for every worker to take a task
    return os.getpid(), sorted(os.sched_getaffinity(0))


def test_worker_pool_pins_each_worker_to_its_own_core():
    import os

    from engine.expert.backends import worker_pool

    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two cores")
    with worker_pool(2) as pool:
        seen = dict(pool.map(_affinity, range(6)))
    assert all(len(c) == 1 for c in seen.values())
    assert len({c[0] for c in seen.values()}) == len(seen)  # distinct workers, distinct cores


@pytest.mark.slow
def test_run_graphs_in_pinned_workers_matches_one_process(tmp_path):
    from engine.expert.runner import load_trajectory, run_graphs

    rng = np.random.default_rng(5)
    scms = [random_linear_scm(rng, 4) for _ in range(2)]
    datas = [make_dataset(s, jax.random.PRNGKey(i), n_obs=50) for i, s in enumerate(scms)]
    stack = lambda xs: jax.tree.map(lambda *a: jnp.stack(a), *xs)  # noqa: E731
    expert = spec(n_trials=2, outcome_samples=50, n_anchors=16, opt_steps=4,
                  prior={"kind": "doubly_robust", "n_bootstrap": 2, "hidden": 16, "layers": 1, "max_epochs": 10}).build()
    one = run_graphs(expert, jax.random.PRNGKey(0), stack(scms), stack(datas), tmp_path / "one")
    two = run_graphs(expert, jax.random.PRNGKey(0), stack(scms), stack(datas), tmp_path / "two", workers=2)
    for a, b in zip(one, two):
        ta, tb = load_trajectory(a), load_trajectory(b)
        np.testing.assert_array_equal(np.asarray(ta.trial_var), np.asarray(tb.trial_var))
        np.testing.assert_allclose(np.asarray(ta.marginals), np.asarray(tb.marginals), atol=1e-5)


def test_posterior_chunks_are_sized_by_memory(tmp_path):
    """The vmapped posterior runs as many graphs at once as XLA says fit in `memory_bytes`: a
    budget of one graph's bytes runs them one by one (times differ), with the same answers."""
    from engine.expert.runner import merge_artifacts, posterior_bytes, run_graphs

    rng = np.random.default_rng(4)
    scms = [random_linear_scm(rng, 4) for _ in range(3)]
    datas = [make_dataset(s, jax.random.PRNGKey(i), n_obs=50) for i, s in enumerate(scms)]
    stack = lambda xs: jax.tree.map(lambda *a: jnp.stack(a), *xs)  # noqa: E731
    expert = spec().build()
    batch = stack(scms), stack(datas)
    args = lambda gs: (jnp.stack([jax.random.PRNGKey(g) for g in gs]),  # noqa: E731
                       *jax.tree.map(lambda a: a[np.asarray(gs)], (batch[0].var_mask, batch[0].target, batch[1])))
    two, three = posterior_bytes(expert, args([0, 1])), posterior_bytes(expert, args([0, 1, 2]))
    assert 1.3 * two < three < 1.7 * two  # the peak grows with the graphs of a call
    together = merge_artifacts(run_graphs(expert, jax.random.PRNGKey(0), *batch, tmp_path / "a"))
    apart = merge_artifacts(run_graphs(expert, jax.random.PRNGKey(0), *batch, tmp_path / "b",
                                       memory_bytes=two / 2))
    assert np.ptp(together["run_seconds"]) == 0 and np.ptp(apart["run_seconds"]) > 0
    np.testing.assert_allclose(apart["marginals"], together["marginals"], atol=1e-6)
