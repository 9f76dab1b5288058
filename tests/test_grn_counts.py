"""GRN cells as a sequencing protocol measures them (engine.scm.technical): each step of the
technical noise against its law, computed independently in NumPy / SciPy, log2 counts per
million against its NumPy twin and a hand computation, and simulated count data end to end."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from engine.scm import simulate
from engine.scm.grn import _measured, observe_cells
from engine.scm.technical import (TechnicalNoise, build_technical, library_size, log_cpm,
                                  log_cpm_reference, measure, poisson)
from engine.spec.mechanisms import TechnicalNoise as TechnicalNoiseSpec
from engine.spec.scm import ScmSpec
from engine.userfiles import log_cpm as numpy_log_cpm


_reference, _log_cpm = jax.jit(log_cpm_reference), jax.jit(log_cpm)


def _clean(n: int = 4000, d: int = 10, seed: int = 0) -> np.ndarray:
    """Clean expression: genes at levels 0.1..30, lognormal across cells, some silent cells."""
    rng = np.random.default_rng(seed)
    x = rng.lognormal(np.log(np.geomspace(0.1, 30, d)), 0.8, (n, d))
    x[:20] = 0.0
    return x.astype(np.float32)


def test_poisson_counts_follow_the_poisson_pmf():
    rates = np.array([0.3, 3.7, 9.99, 10.0, 25.0, 300.0], np.float32)  # both samplers, the seam
    n = 20_000
    k = np.asarray(jax.jit(poisson)(jax.random.key(0), jnp.asarray(np.tile(rates, (n, 1)))))
    assert (k == np.round(k)).all() and (k >= 0).all()
    for lam, col in zip(rates, k.T):
        assert abs(col.mean() - lam) < 4 * np.sqrt(lam / n), (lam, col.mean())
        assert abs(col.var() - lam) < 4 * np.sqrt((lam + 2 * lam**2) / n), (lam, col.var())
        ks = np.arange(int(lam + 10 * np.sqrt(lam) + 10))
        expected = stats.poisson.pmf(ks, lam) * n
        seen = np.bincount(col.astype(int), minlength=len(ks))[: len(ks)]
        big = expected >= 5
        chi2 = ((seen[big] - expected[big]) ** 2 / expected[big]).sum()
        assert stats.chi2.sf(chi2, big.sum() - 1) > 1e-3, (lam, chi2)
    odd = np.asarray(poisson(jax.random.key(1), jnp.array([0.0, jnp.nan, jnp.inf])))
    assert odd[0] == 0 and np.isnan(odd[1]) and odd[2] == np.inf  # the health check sees them


def test_library_sizes_are_lognormal_and_keep_each_cells_profile():
    x = _clean()
    mu, s = 6.0, 0.4
    y = np.asarray(jax.jit(library_size)(jax.random.key(2), jnp.asarray(x), mu, s), np.float64)
    live = x.sum(1) > 0
    log_total = np.log(y[live].sum(1))
    n = live.sum()
    assert abs(log_total.mean() - mu) < 4 * s / np.sqrt(n), log_total.mean()
    assert abs(log_total.std() - s) < 4 * s / np.sqrt(2 * n), log_total.std()
    assert stats.kstest((log_total - mu) / s, "norm").pvalue > 1e-3
    share = x[live] / x[live].sum(1, keepdims=True)
    np.testing.assert_allclose(y[live] / y[live].sum(1, keepdims=True), share, rtol=1e-4, atol=1e-7)
    assert (y[~live] == 0).all()  # a silent cell stays silent


def _protocol(**kw) -> TechnicalNoise:
    d = 10
    fields = dict(outlier=jnp.ones(d), library_mean=jnp.float32(5.0), library_scale=jnp.float32(0.0),
                  dropout_shape=jnp.float32(8.0), dropout_percentile=jnp.float32(74.0),
                  dropout_mid=jnp.float32(jnp.nan))
    return TechnicalNoise(**{**fields, **kw})


@pytest.mark.parametrize("counts", [False, True])
def test_dropout_zero_fraction_matches_the_keep_probability(counts):
    """With a fixed library size (scale 0) every cell's rates are known, so the chance that a
    value reads 0 is, independently of the code, 1 - p + p e^(-x) (p = the keep probability)."""
    x = _clean()
    tech = _protocol(counts=counts)
    real = jnp.ones(10, bool)
    run = jax.jit(measure)
    y, mid = run(tech, jax.random.key(3), jnp.asarray(x), real)
    y = np.asarray(y, np.float64)
    rate = x * np.exp(5.0) / np.where(x.sum(1) > 0, x.sum(1), 1.0)[:, None]
    q = np.percentile(np.log1p(rate), 74.0)
    assert abs(float(mid) - q) < 1e-4 * max(1.0, abs(q))
    keep = 1.0 / (1.0 + np.exp(-8.0 * (np.log1p(rate) - q)))
    p_zero = 1.0 - keep + (keep * np.exp(-rate) if counts else 0.0)
    p_zero[x == 0] = 1.0
    se = np.sqrt((p_zero * (1 - p_zero)).sum()) / p_zero.size
    assert abs((y == 0).mean() - p_zero.mean()) < 4 * se, ((y == 0).mean(), p_zero.mean())
    if counts:
        assert (y == np.round(y)).all()
    else:  # kept values are the library-scaled rates themselves
        kept = y > 0
        np.testing.assert_allclose(y[kept], rate[kept], rtol=1e-4)
    # A midpoint already fixed (by the observational cells) is used as it is.
    y2, mid2 = run(dataclasses.replace(tech, dropout_mid=jnp.float32(1e6)), jax.random.key(3),
                   jnp.asarray(x), real)
    assert float(mid2) == 1e6 and (np.asarray(y2) == 0).all()


def test_outlier_genes_have_the_drawn_frequency_and_lognormal_factors():
    spec = TechnicalNoiseSpec(outlier_prob=0.05, outlier_mean=3.0, outlier_scale=1.0)
    var_mask = jnp.arange(40) < 30  # 10 padded genes, never outliers
    keys = jax.random.split(jax.random.key(4), 1000)
    f = np.asarray(jax.jit(jax.vmap(lambda k: build_technical(spec, k, var_mask).outlier))(keys))
    assert (f[:, 30:] == 1).all()
    hit = f[:, :30] != 1
    n = hit.size
    assert abs(hit.mean() - 0.05) < 4 * np.sqrt(0.05 * 0.95 / n), hit.mean()
    logs = np.log(f[:, :30][hit])
    assert abs(logs.mean() - 3.0) < 4 / np.sqrt(len(logs)) and abs(logs.std() - 1.0) < 0.08
    none = TechnicalNoiseSpec(outliers=False)
    assert (np.asarray(jax.jit(lambda k: build_technical(none, k, var_mask).outlier)(keys[0])) == 1).all()


def test_log_cpm_against_numpy_and_by_hand():
    counts = np.array([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0], [2.0, 2.0, 4.0], [0.0, 5.0, 5.0]])
    mask = np.zeros_like(counts, bool)
    mask[3, 1] = True  # an interventional row: not in the reference
    got = numpy_log_cpm(counts, mask)
    ref = np.log2(np.array([0.25e6, 0.75e6, 0.25e6, 0.25e6, 0.5e6]))  # obs rows' non-zero values
    shift, spread = ref.min(), ref.std()
    by_hand = np.zeros_like(counts)
    by_hand[0, :2] = (ref[:2] - shift) / spread
    by_hand[2] = (ref[2:] - shift) / spread
    by_hand[3, 1:] = (np.log2(0.5e6) - shift) / spread
    np.testing.assert_allclose(got, by_hand, rtol=1e-12)
    # The simulator's jnp version, reference from observational rows, on realistic counts.
    rng = np.random.default_rng(5)
    x = rng.poisson(_clean(600, 8) * 3).astype(np.float32)
    x[:, 6:] = 0.0  # padded genes
    real = jnp.arange(8) < 6
    s, sp = _reference(jnp.asarray(x[:400]), real)
    y = np.asarray(_log_cpm(jnp.asarray(x), s, sp, real))
    m = np.zeros((600, 6), bool)
    m[400:, 0] = True
    np.testing.assert_allclose(y[:, :6], numpy_log_cpm(x[:, :6], m), rtol=2e-5, atol=2e-5)
    assert (y[:, 6:] == 0).all()


def test_simulated_grn_counts_end_to_end():
    """Default technical noise on a typical network: integer counts (interventional cells too,
    knockouts at 0), the protocol's dropout midpoint fixed by the observational cells, and a
    zero fraction in AVICI's range, set mostly by each graph's drawn dropout percentile."""
    spec = ScmSpec.model_validate({
        "graphs": {"kind": "erdos_renyi", "edges_per_node": 2.0}, "n_nodes": 10,
        "mechanism": {"kind": "grn", "brownian": "path", "technical_noise": {}},
        "interventions": {"kind": "hard", "value": 0.0, "rows_per_node": 4}, "n_obs": 300,
    })
    scm, data = simulate(spec, jax.random.key(6), 24)
    obs, iv = np.asarray(data.obs), np.asarray(data.int_values)
    im, rows = np.asarray(data.int_mask), np.asarray(data.int_row_mask)
    for v in (obs, iv):
        assert (v >= 0).all() and (v == np.round(v)).all()
    assert (iv[im] == 0).all() and iv[rows].any()
    tech = scm.grn.technical
    assert np.isfinite(np.asarray(tech.dropout_mid)).all()
    zeros = (obs == 0).mean((1, 2))
    pct = np.asarray(tech.dropout_percentile)
    assert set(np.unique(pct)) <= {45.0, 74.0, 82.0}
    for p, lo, hi in [(45, 0.40, 0.60), (74, 0.60, 0.85), (82, 0.70, 0.90)]:
        assert ((zeros[pct == p] > lo) & (zeros[pct == p] < hi)).all(), (p, zeros[pct == p])
    assert 0.5 < zeros.mean() < 0.8, zeros.mean()
    # Graph 0's cells as `standardize = "log_cpm"` gives them: log_cpm of the counts, with the
    # reference the observational cells fix in the SCM (what `infer --counts` does in NumPy).
    one = jax.tree.map(lambda a: a[0], scm)

    def counts_and_log_cpm(s, key):
        z = jnp.zeros((200, s.d))
        raw = _measured(s, key, z.astype(bool), z)[0]
        fixed, out, _ = observe_cells(dataclasses.replace(s, transform="log_cpm"), key, 200)
        return raw, out, fixed.loc, fixed.scale

    raw, out, loc, scale = (np.asarray(a) for a in jax.jit(counts_and_log_cpm)(one, jax.random.key(7)))
    assert (raw == np.round(raw)).all() and (raw == 0).mean() > 0.3
    np.testing.assert_allclose(out, numpy_log_cpm(raw, np.zeros_like(raw, bool)), rtol=1e-4, atol=1e-4)
    nz = raw > 0
    positive = np.log2((raw / raw.sum(1, keepdims=True))[nz] * 1e6)
    np.testing.assert_allclose([loc[0], scale[0]], [positive.min(), positive.std()], rtol=1e-4)


def test_counts_spec_options_are_checked():
    base = {"graphs": {"kind": "erdos_renyi", "edges_per_node": 1.0}, "n_nodes": 5}
    with pytest.raises(ValueError, match="log_cpm"):
        ScmSpec.model_validate({**base, "standardize": "log_cpm"})  # linear data are not counts
    grn = {"kind": "grn", "technical_noise": {}}
    spec = ScmSpec.model_validate({**base, "mechanism": grn, "standardize": "log_cpm",
                                   "interventions": {"kind": "hard", "value": 0.0}})
    assert spec.mechanism[0].technical_noise.counts and spec.standardize == "log_cpm"
    for bad in ({"dropout_percentile": 120.0}, {"outlier_prob": 1.5}, {"dropout_shape": 0.0}):
        with pytest.raises(ValueError):
            TechnicalNoiseSpec(**bad)
    assert ScmSpec.model_validate({**base, "mechanism": {"kind": "grn"}, "interventions": {
        "kind": "hard", "value": 0.0}}).mechanism[0].technical_noise is None  # off by default


def test_predictor_reads_counts_as_log_cpm(tmp_path):
    """`predictor.counts` (`acbo infer --counts`) feeds the model log2 CPM: the same graph as
    the log_cpm values given as plain data; negative counts are refused."""
    from engine.infer import InferError, Predictor
    from engine.spec.model import StatsModel

    spec = StatsModel(kind="stats", dim=16, layers=1, heads=2)
    model = spec.build(jax.random.key(0))
    rng = np.random.default_rng(8)
    x = rng.poisson(_clean(200, 5, seed=8) * 4).astype(float)
    x[0, 0] += 1.0  # no column is constant
    names = [f"g{i}" for i in range(5)]
    predictor = Predictor(tmp_path, model, spec)
    assert predictor.counts is False  # plain data unless told, or trained on log_cpm
    predictor.counts = True
    as_counts = predictor.graph((x, names)).probs
    predictor.counts = False
    plain = predictor.graph((numpy_log_cpm(x, np.zeros_like(x, bool)), names)).probs
    np.testing.assert_allclose(as_counts, plain, atol=1e-6)
    assert np.abs(as_counts - predictor.graph((x, names)).probs).max() > 1e-4
    predictor.counts = True
    with pytest.raises(InferError, match="non-negative counts"):
        predictor.graph((x - 1.0, names))
