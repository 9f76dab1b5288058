"""Causal BO as strategies: the buffer, the parent-set belief, the episode runner with every
surrogate x acquisition, regret and the reference optimum (against hand values and brute force)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.cbo import regret
from engine.cbo.acquisitions import ExpectedImprovement, RandomAcquisition
from engine.cbo.buffer import Buffer
from engine.cbo.episode import Episode, episode_key, run_episode, run_episodes
from engine.cbo.posterior import ParentSetPosterior, as_numpy_sets
from engine.cbo.surrogates import AmortizedSurrogate, ExpertSurrogate, NullSurrogate, OracleSurrogate
from engine.expert.toy import LinearSCM, make_dataset
from engine.scm.types import Dataset
from engine.spec.expert import ParentScaleExpert

LOOP = dict(outcome_samples=200, n_anchors=16, opt_steps=4)


def small_scm(d_pad: int = 5) -> LinearSCM:
    # X0 -> X1 -> Y(3) <- X2,  X0 -> X2 ; padded to d_pad variables
    w = np.zeros((d_pad, d_pad), np.float32)
    w[0, 1], w[1, 3], w[2, 3], w[0, 2] = 1.5, 2.0, -1.0, 0.8
    mask = np.arange(d_pad) < 4
    return LinearSCM(jnp.asarray(w), jnp.asarray(mask, jnp.float32), jnp.asarray(mask), jnp.asarray(3))


def expert_spec(**kw) -> ParentScaleExpert:
    return ParentScaleExpert(kind="parent_scale", prior={"kind": "uniform", "max_parents": 2}, **{**LOOP, **kw})


# ------------------------------------------------------------------------------------ buffer


def test_buffer_add_and_model_input_by_hand():
    obs = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)
    iv = np.array([[7.0, 8.0, 9.0], [0.5, 0.5, 0.5]], np.float32)
    im = np.array([[True, False, False], [False, True, False]])
    data = Dataset(jnp.asarray(obs), jnp.asarray(iv), jnp.asarray(im), jnp.asarray([True, False]))
    buf = Buffer.from_dataset(data, room=2)
    assert buf.capacity == 4 and int(buf.count) == 2
    np.testing.assert_array_equal(np.asarray(buf.used()), [True, False, False, False])

    r1, r2, r3 = (np.full(3, v, np.float32) for v in (10.0, 20.0, 30.0))
    m1, m2 = np.array([False, False, True]), np.array([True, False, False])
    buf = buf.add(jnp.asarray(r1), jnp.asarray(m1))
    buf = jax.jit(Buffer.add)(buf, jnp.asarray(r2), jnp.asarray(m2))
    assert int(buf.count) == 4
    full = buf.add(jnp.asarray(r3), jnp.asarray(m1))  # no room: unchanged
    for a, b in zip(jax.tree.leaves(buf), jax.tree.leaves(full)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    values = np.concatenate([iv, r1[None], r2[None]])
    mask = np.concatenate([im, m1[None], m2[None]])
    np.testing.assert_array_equal(np.asarray(buf.values), values)
    np.testing.assert_array_equal(np.asarray(buf.mask), mask)
    np.testing.assert_array_equal(np.asarray(buf.valid), [True, False, True, True])
    np.testing.assert_array_equal(np.asarray(buf.used()), [True, False, True, True])

    x, row_mask = buf.model_input()
    assert x.shape == (6, 3, 2)
    np.testing.assert_array_equal(np.asarray(x[..., 0]), np.concatenate([obs, values]))
    np.testing.assert_array_equal(np.asarray(x[..., 1]), np.concatenate([np.zeros((2, 3)), mask]).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(row_mask), [True, True, True, False, True, True])

    # before any trial the empty rows are not input
    _, rm0 = Buffer.from_dataset(data, room=2).model_input()
    np.testing.assert_array_equal(np.asarray(rm0), [True, True, True, False, False, False])


# --------------------------------------------------------------------------------- posterior


def test_posterior_marginals_entropy_top_k_by_hand():
    sets = np.array([[0, -1], [1, 2], [-1, -1], [2, -1]], np.int32)
    w = np.array([0.5, 0.3, 0.2, 0.0], np.float32)
    post = ParentSetPosterior.from_weights(jnp.asarray(sets), jnp.asarray(w), 4)
    np.testing.assert_allclose(np.asarray(post.marginals()), [0.5, 0.3, 0.3, 0.0], atol=1e-6)
    ref = -sum(p * np.log(p) for p in (0.5, 0.3, 0.2))
    assert float(post.entropy()) == pytest.approx(ref, rel=1e-5)
    top, p = post.top_k(2)
    np.testing.assert_array_equal(np.asarray(top), sets[:2])
    np.testing.assert_allclose(np.asarray(p), [0.5, 0.3], atol=1e-6)
    listed = as_numpy_sets(post)
    assert [s for s, _ in listed] == [(0,), (1, 2), ()]
    np.testing.assert_allclose([q for _, q in listed], [0.5, 0.3, 0.2], atol=1e-6)

    point = ParentSetPosterior.point(jnp.asarray([False, True, False, True]))
    np.testing.assert_array_equal(np.asarray(point.marginals()), [0, 1, 0, 1])
    assert float(point.entropy()) == 0.0


def _brute_force_sets(p, ok, max_parents, n_sets):
    """Every set of at most max_parents ok variables with its independent-Bernoulli probability;
    the n_sets most probable, renormalised."""
    idx = np.flatnonzero(ok)
    out = []
    for r in range(max_parents + 1):
        for s in itertools.combinations(idx, r):
            prob = np.prod([p[i] if i in s else 1 - p[i] for i in idx])
            out.append((frozenset(int(i) for i in s), prob))
    out.sort(key=lambda t: -t[1])
    top = out[:n_sets]
    z = sum(q for _, q in top)
    return {s: q / z for s, q in top}, out


@pytest.mark.parametrize("case", [
    # (marginals, var_mask, target, max_parents, n_sets)
    ([0.9, 0.2, 0.7, 0.0, 0.4, 0.55], [1, 1, 1, 1, 1, 0], 3, 2, 7),
    ([0.9, 0.9, 0.9, 0.5], [1, 1, 1, 1], 3, 1, 3),  # {2} beats the empty set: enumerate past the fewest vars
    ([0.99, 0.98, 0.6, 0.59, 0.58, 0.57, 0.3], [1] * 7, 6, 3, 5),
    ([0.1, 0.3, 0.05, 0.2], [1, 1, 1, 1], 0, 3, 100),  # more sets asked than exist
])
def test_from_marginals_matches_brute_force(case):
    marg, vm, target, m, n = case
    marg, vm = np.asarray(marg, np.float32), np.asarray(vm, bool)
    ok = vm & (np.arange(len(vm)) != target)
    post = jax.jit(ParentSetPosterior.from_marginals, static_argnums=(3, 4))(
        jnp.asarray(marg), jnp.asarray(vm), jnp.asarray(target), m, n)
    want, _ = _brute_force_sets(np.clip(marg, 1e-6, 1 - 1e-6), ok, m, n)
    got = {frozenset(s): q for s, q in as_numpy_sets(post)}
    assert set(got) == set(want)
    for s in want:
        assert got[s] == pytest.approx(want[s], rel=1e-4, abs=1e-7)
    # the belief's marginals are those of the kept sets
    ref = np.zeros(len(vm))
    for s, q in want.items():
        for i in s:
            ref[i] += q
    np.testing.assert_allclose(np.asarray(post.marginals()), ref, atol=1e-5)
    assert float(post.entropy()) == pytest.approx(-sum(q * np.log(q) for q in want.values()), rel=1e-4, abs=1e-6)


# ---------------------------------------------------------------------------------- episodes


@pytest.fixture(scope="module")
def problem():
    scm = small_scm()
    return scm, make_dataset(scm, jax.random.PRNGKey(0), n_obs=100, n_per_var=2)


def _check_episode(ep: Episode, scm, data, T: int):
    n_int, d = data.int_values.shape
    assert ep.trial_var.shape == (T,) and ep.marginals.shape == (T + 1, d) and ep.entropy.shape == (T + 1,)
    assert ep.trial_seconds.shape == (T,) and np.all(np.asarray(ep.trial_seconds) > 0)
    assert int(ep.buffer.count) == n_int + T
    tv, tx = np.asarray(ep.trial_var), np.asarray(ep.trial_value)
    ok = np.asarray(scm.var_mask) & (np.arange(d) != int(scm.target))
    assert np.all(ok[tv])
    obs = np.asarray(data.obs)
    assert np.all(tx >= obs[:, tv].min(0) - 1e-5) and np.all(tx <= obs[:, tv].max(0) + 1e-5)
    rows = np.asarray(ep.buffer.values)[n_int:]
    np.testing.assert_allclose(rows[np.arange(T), tv], tx, atol=1e-5)  # the row carries its intervention
    np.testing.assert_array_equal(np.asarray(ep.best_y), np.minimum.accumulate(np.asarray(ep.trial_y)))
    marg = np.asarray(ep.marginals)
    assert np.all(marg[:, int(scm.target)] == 0) and np.all(marg[:, ~np.asarray(scm.var_mask)] == 0)
    assert np.all(np.isfinite(np.asarray(ep.entropy))) and np.all(np.asarray(ep.entropy) >= -1e-6)


def _amortized():
    from engine.spec.model import StatsModel

    model = StatsModel(kind="stats", dim=8, layers=1, heads=2).build(jax.random.PRNGKey(0))
    return AmortizedSurrogate(model, max_parents=2, n_sets=8)


SURROGATES = {
    "expert": lambda: ExpertSurrogate(expert_spec()),
    "oracle": OracleSurrogate,
    "amortized": _amortized,
    "null": NullSurrogate,
}
ACQUISITIONS = {"ei": lambda: ExpectedImprovement(expert_spec()), "random": RandomAcquisition}


def _slow_if_ei(acq):
    # EI compiles its acquisition per set bucket (~10-30 s each on 2 busy cores): the slow phase
    return pytest.param(acq, marks=pytest.mark.slow) if acq == "ei" else acq


@pytest.mark.parametrize("acq", [_slow_if_ei(a) for a in ACQUISITIONS])
@pytest.mark.parametrize("sur", list(SURROGATES))
def test_every_surrogate_and_acquisition_runs(problem, sur, acq):
    scm, data = problem
    T = 2
    ep = run_episode(jax.random.PRNGKey(1), scm, data, SURROGATES[sur](), ACQUISITIONS[acq](), T, 100)
    _check_episode(ep, scm, data, T)
    marg = np.asarray(ep.marginals)
    if sur == "oracle":
        np.testing.assert_array_equal(marg, np.tile([0, 1, 1, 0, 0], (T + 1, 1)))
        if acq == "ei":  # causal BO explores the true parents only
            assert set(np.asarray(ep.trial_var).tolist()) <= {1, 2}
    if sur == "null":
        assert np.all(marg == 0)
    if sur in ("expert", "amortized"):
        np.testing.assert_allclose(np.asarray(ep.posteriors.probs).sum(1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_oracle_ei_reaches_the_exact_optimum(problem):
    """On X0 -> X1 -> Y <- X2 (E[Y | do(X1 = x)] = 2x is the steepest), CBO with the true parents
    finds the exact optimum do(X1 = min) within 2% of the gap from not intervening."""
    scm, data = problem
    obs = np.asarray(data.obs)
    opt = regret.optimum(scm, obs.min(0), obs.max(0))
    assert opt.exact and int(opt.var) == 1 and float(opt.x) == pytest.approx(obs[:, 1].min())
    assert float(opt.value) == pytest.approx(2.0 * obs[:, 1].min(), rel=1e-5)
    ep = run_episode(jax.random.PRNGKey(2), scm, data, OracleSurrogate(), ExpectedImprovement(expert_spec()), 4, 500)
    best = regret.best_so_far(regret.exact_values(scm, ep.trial_var, ep.trial_value))
    closure = float(regret.gap_closure(0.0, best[-1], opt.value))  # E[Y] = 0 without intervening
    assert closure >= 0.98
    # the noisy outcome agrees with the exact objective at the chosen intervention
    v, x = int(ep.trial_var[-1]), float(ep.trial_value[-1])
    assert float(ep.trial_y[-1]) == pytest.approx(scm.do_mean(v, x), abs=0.3)


@pytest.mark.parametrize("acq", [_slow_if_ei(a) for a in ACQUISITIONS])
def test_same_key_same_episode_and_keys_by_index(problem, acq):
    scm, data = problem
    a, b = (run_episode(jax.random.PRNGKey(3), scm, data, ExpertSurrogate(expert_spec()), ACQUISITIONS[acq](), 3, 100)
            for _ in range(2))
    for f in ("trial_var", "trial_value", "trial_y", "best_y", "marginals", "entropy"):
        np.testing.assert_array_equal(np.asarray(getattr(a, f)), np.asarray(getattr(b, f)))
    for x, y in zip(jax.tree.leaves(a.buffer), jax.tree.leaves(b.buffer)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

    # a batch gives episode g the key fold_in(key, g), whatever else runs
    stack = lambda *xs: jax.tree.map(lambda *a: jnp.stack(a), *xs)  # noqa: E731
    data2 = make_dataset(scm, jax.random.PRNGKey(9), n_obs=100, n_per_var=2)
    batch = run_episodes(jax.random.PRNGKey(4), stack(scm, scm), stack(data, data2), NullSurrogate(),
                         RandomAcquisition(), 3, 50)
    alone = run_episode(episode_key(jax.random.PRNGKey(4), 1), scm, data2, NullSurrogate(), RandomAcquisition(), 3, 50)
    for f in ("trial_var", "trial_value", "trial_y"):
        np.testing.assert_array_equal(np.asarray(getattr(batch[1], f)), np.asarray(getattr(alone, f)))


def test_expert_surrogate_is_parent_scale_posterior(problem):
    """The expert surrogate's belief after D_I is PARENT_SCALE's posterior over D_I."""
    from engine.expert.parent_scale import ParentScale

    scm, data = problem
    spec = expert_spec()
    ep = run_episode(jax.random.PRNGKey(5), scm, data, ExpertSurrogate(spec), RandomAcquisition(), 1, 50)
    ref = ParentScale(spec).posterior(jax.random.split(jax.random.PRNGKey(5))[0], scm.var_mask, scm.target, data)
    np.testing.assert_allclose(np.asarray(ep.marginals[0]), np.asarray(ref.marginals[-1]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(ep.surrogate_state.path), np.asarray(ref.set_probs), atol=1e-6)


# ------------------------------------------------------------------------------------ regret


def test_regret_functions_by_hand():
    best = jnp.asarray([3.0, 2.0, 2.0, 0.5])
    ys = jnp.asarray([3.0, 2.0, 5.0, 0.5])
    np.testing.assert_allclose(np.asarray(regret.best_so_far(ys)), [3.0, 2.0, 2.0, 0.5])
    np.testing.assert_allclose(np.asarray(regret.simple_regret(best, -1.0)), [4.0, 3.0, 3.0, 1.5])
    np.testing.assert_allclose(np.asarray(regret.cumulative_regret(ys, -1.0)), [4.0, 7.0, 13.0, 14.5])
    assert float(regret.gap_closure(4.0, 0.5, 0.0)) == pytest.approx(0.875)
    assert np.isnan(float(regret.gap_closure(1.0, 1.0, 1.0)))
    # closure per trial: 0.25, 0.5, 0.5, 0.875
    assert int(regret.trials_to_closure(best, 4.0, 0.0, 0.5)) == 2
    assert int(regret.trials_to_closure(best, 4.0, 0.0)) == 5  # never 95%: T + 1
    assert int(regret.trials_to_closure(best, 4.0, 0.3)) == 5  # (4 - 0.5) / 3.7 = 0.946
    assert int(regret.trials_to_closure(best, 4.0, 0.35)) == 4  # 3.5 / 3.65 = 0.959
    # batched over episodes: per-episode y0 and optimum
    two = jnp.stack([best, best - 1.0])
    steps = regret.trials_to_closure(two, jnp.asarray([4.0, 4.0]), jnp.asarray([0.0, 0.0]))
    np.testing.assert_array_equal(np.asarray(steps), [5, 4])
    np.testing.assert_allclose(np.asarray(regret.simple_regret(two, jnp.asarray([0.0, -1.0])))[:, 0], [3.0, 3.0])
    np.testing.assert_array_equal(np.asarray(regret.within(jnp.asarray([-0.99, -0.98]), -1.0, 0.0)), [True, False])


def test_optimum_of_the_toy_scm_by_hand():
    # E[Y | do(X0 = x)] = (1.5 * 2 - 0.8) x = 2.2 x, E[Y | do(X1 = x)] = 2 x, E[Y | do(X2 = x)] = -x
    scm = small_scm()
    low, high = np.array([-1.0, -2.0, -3.0, -9.0, -9.0]), np.array([1.0, 2.0, 3.0, 9.0, 9.0])
    opt = regret.optimum(scm, low, high)
    assert opt.exact and int(opt.var) == 1 and float(opt.x) == -2.0 and float(opt.value) == pytest.approx(-4.0)
    opt = regret.optimum(scm, np.array([-1.0, -1.0, -4.5, 0, 0]), np.array([1.0, 1.0, 4.5, 0, 0]))
    assert int(opt.var) == 2 and float(opt.x) == 4.5 and float(opt.value) == pytest.approx(-4.5)
    vals = regret.exact_values(scm, jnp.asarray([0, 1, 2]), jnp.asarray([1.0, 1.0, 1.0]))
    np.testing.assert_allclose(np.asarray(vals), [2.2, 2.0, -1.0], rtol=1e-5)


@pytest.mark.slow  # simulates (compiles the simulator) and samples 80K rows
def test_optimum_exact_for_linear_simulator_scms_and_monte_carlo_close():
    from engine.expert.loop import index_graph
    from engine.scm import simulate
    from engine.scm.optimum import linear_optimum
    from engine.spec.scm import ScmSpec

    spec = ScmSpec.model_validate({
        "graphs": [{"kind": "erdos_renyi", "edges_per_node": 1.5}],
        "n_nodes": {"low": 4, "high": 4},
        "mechanism": {"kind": "linear"},
        "noise": {"kind": "gaussian", "scale": {"dist": "uniform", "low": 0.5, "high": 1.0}},
        "interventions": {"kind": "hard", "value": {"dist": "uniform", "low": -2.0, "high": 2.0}, "rows_per_node": 1},
        "n_obs": 50,
    })
    scms, _ = simulate(spec, jax.random.key(0), 1)
    scm = index_graph(scms, 0)
    opt = regret.optimum(scm, -2.0, 2.0)
    ref = linear_optimum(scm, -2.0, 2.0)
    assert opt.exact and float(opt.value) == pytest.approx(float(ref[0]))
    # per-variable bounds: the same closed form, checked against every endpoint by brute force
    d = scm.var_mask.shape[0]
    low, high = np.linspace(-2.0, -1.0, d), np.linspace(1.0, 2.0, d)
    per = regret.optimum(scm, low, high)
    ends = [(float(regret.exact_values(scm, jnp.asarray([j]), jnp.asarray([x]))[0]), j, x)
            for j in range(d) if j != int(scm.target) and bool(scm.var_mask[j]) for x in (low[j], high[j])]
    best = min(ends)
    assert float(per.value) == pytest.approx(best[0], rel=1e-5) and int(per.var) == best[1]
    # the Monte-Carlo estimate (used for non-linear SCMs) lands near the exact value
    from engine.cbo.regret import _mc_means

    xs = np.stack([np.linspace(low[j], high[j], 5) for j in range(d)]).astype(np.float32)
    means, ses = (np.asarray(a) for a in _mc_means(scm, jax.random.PRNGKey(0), jnp.asarray(xs), 4000))
    exact = np.asarray([[float(regret.exact_values(scm, jnp.asarray([j]), jnp.asarray([x]))[0]) for x in xs[j]]
                        for j in range(d)])
    ok = np.asarray(scm.var_mask) & (np.arange(d) != int(scm.target))
    assert np.all(np.abs(means - exact)[ok] <= 5 * ses[ok] + 1e-4)
