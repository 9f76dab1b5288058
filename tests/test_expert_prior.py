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
