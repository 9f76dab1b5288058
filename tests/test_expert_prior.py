"""Doubly-robust prior: the statistics (t-test, BY) against scipy-free closed forms, and selection."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.expert.prior_dr import _ttest_rel_p, benjamini_yekutieli, doubly_robust_prior, frequency_prior
from engine.expert.toy import LinearSCM, make_dataset
from engine.spec.expert import DoublyRobustPrior


def test_benjamini_yekutieli_matches_definition():
    p = np.array([0.001, 0.04, 0.01, 0.5, 0.2, 0.9])
    valid = np.array([True, True, True, True, True, False])
    got = np.asarray(benjamini_yekutieli(jnp.asarray(p), jnp.asarray(valid)))
    m = 5
    cm = sum(1 / i for i in range(1, m + 1))
    ps = p[:5]
    order = np.argsort(ps)
    adj = np.minimum.accumulate((m * cm * ps[order] / np.arange(1, m + 1))[::-1])[::-1]
    ref = np.empty(5)
    ref[order] = np.minimum(adj, 1)
    np.testing.assert_allclose(got[:5], ref, rtol=1e-5)
    assert got[5] == 1.0


def test_paired_ttest_p_value():
    rng = np.random.default_rng(0)
    diff = rng.normal(0.3, 1.0, 40)
    t = diff.mean() / (diff.std(ddof=1) / np.sqrt(40))
    # two-sided p of Student t with 39 df, by numerical integration of the density
    from math import gamma, pi, sqrt

    nu = 39
    xs = np.linspace(abs(t), 60, 200001)
    dens = gamma((nu + 1) / 2) / (sqrt(nu * pi) * gamma(nu / 2)) * (1 + xs**2 / nu) ** (-(nu + 1) / 2)
    ref = 2 * np.trapezoid(dens, xs)
    assert abs(float(_ttest_rel_p(jnp.asarray(diff))) - ref) < 1e-4
    assert float(_ttest_rel_p(jnp.zeros(10))) == 1.0


def test_frequency_prior_dedups_and_falls_back():
    sets = jnp.asarray([[1, 2], [1, 2], [0, -1], [-1, -1]], jnp.int32)
    vm, tgt = jnp.ones(4, bool), jnp.asarray(3)
    s, lp = frequency_prior(sets, vm, tgt)
    np.testing.assert_allclose(np.exp(np.asarray(lp))[:4], [0.5, 0, 0.25, 0.25], atol=1e-6)
    s, lp = frequency_prior(jnp.full((3, 2), -1, jnp.int32), vm, tgt)
    np.testing.assert_allclose(np.exp(np.asarray(lp)), [0, 0, 0, 1 / 3, 1 / 3, 1 / 3, 0], atol=1e-6)


@pytest.mark.slow
def test_individual_selection_finds_parents_rejects_independent():
    # X0 -> X1 -> Y(3) <- X2, X0 -> X2 ; X4 independent of everything
    w = np.zeros((5, 5), np.float32)
    w[0, 1], w[1, 3], w[2, 3], w[0, 2] = 1.5, 2.0, -1.0, 0.8
    scm = LinearSCM(jnp.asarray(w), jnp.ones(5), jnp.ones(5, bool), jnp.asarray(3))
    data = make_dataset(scm, jax.random.PRNGKey(0))
    # a small net keeps the test quick; the selection logic is the one used at full size
    prior = DoublyRobustPrior(kind="doubly_robust", mode="individual", n_bootstrap=2, hidden=32,
                              layers=2, max_epochs=60)
    sets, lp = jax.jit(lambda k, o: doubly_robust_prior(prior, k, o, scm.var_mask, scm.target))(
        jax.random.PRNGKey(1), data.obs)
    probs = np.exp(np.asarray(lp))
    top = np.asarray(sets)[np.argmax(probs)]
    assert sorted(i for i in top if i >= 0) == [1, 2]
    assert probs.max() > 0.99


@pytest.mark.parametrize("mode", ["joint", "individual"])
def test_held_out_predictions_match_per_net_reference(mode):
    # each net trained alone on all rows but its fold, predicting every row: the original layout.
    # n = 23 leaves folds of 5 and 4 rows (padding), batch_size 7 an empty last minibatch.
    from engine.expert.prior_dr import _bootstrap, _fold_ids, _train_and_predict, _variants, held_out_predictions

    prior = DoublyRobustPrior(kind="doubly_robust", mode=mode, n_bootstrap=2, hidden=8, layers=1,
                              batch_size=7, max_epochs=8, patience=3)
    n, d = 23, 3
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
    y = x @ jnp.asarray([1.0, -2.0, 0.0]) + 0.1
    keys = jax.random.split(jax.random.PRNGKey(4), prior.n_bootstrap)
    xb, yb, rows, nkeys = jax.vmap(lambda k: _bootstrap(prior, k, x, y))(keys)
    got = {nb: np.asarray(jax.jit(lambda *a, nb=nb: held_out_predictions(prior, *a, nb))(xb, yb, rows, nkeys))
           for nb in (1, 3)}
    train = jax.jit(lambda k, xf, yy, it, xp: _train_and_predict(k, xf, yy, it, xp, prior))
    ref = np.zeros_like(got[1])
    for b in range(prior.n_bootstrap):
        perm = jax.random.permutation(jax.random.split(keys[b], 3)[1], n)
        fold = np.asarray(jnp.zeros(n, jnp.int32).at[perm].set(jnp.asarray(_fold_ids(n, prior.n_folds))))
        xv = _variants(xb[b])
        for r in range(prior.n_repeats):
            for f in range(prior.n_folds):
                k = nkeys[b, r, f]
                if mode == "joint":
                    pred = np.asarray(train(k, xv[0], yb[b], jnp.asarray(fold != f), xv))
                else:
                    ks = jax.random.split(k, d + 1)
                    pred = np.stack([np.asarray(train(ks[j], xv[j], yb[b], jnp.asarray(fold != f), xv[j][None]))[0]
                                     for j in range(d + 1)])
                ref[b, r][:, fold == f] = pred[:, fold == f]
    np.testing.assert_allclose(got[1], ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[3], ref, rtol=1e-3, atol=1e-3)  # batched nets: float rounding only
