"""engine.scm.fastrand: the simulator's random numbers and cosine, against exact references."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy import stats

from engine.scm import fastrand

N = 400_000


def test_cos_and_sincos_match_float64_within_1e_6():
    x = np.linspace(-1e4, 1e4, 2_000_001, dtype=np.float32)
    ref = x.astype(np.float64)
    s, c = fastrand.sincos(x)
    assert np.abs(np.asarray(fastrand.cos(x)) - np.cos(ref)).max() < 1e-6
    assert np.abs(np.asarray(s) - np.sin(ref)).max() < 1e-6
    assert np.abs(np.asarray(c) - np.cos(ref)).max() < 1e-6


@pytest.mark.parametrize("name, cdf", [
    ("normal", stats.norm.cdf), ("laplace", stats.laplace.cdf), ("cauchy", stats.cauchy.cdf),
    ("uniform", stats.uniform.cdf),
])
def test_distributions_pass_kolmogorov_smirnov(name, cdf):
    z = np.asarray(getattr(fastrand, name)(jax.random.key(3), (N,)), np.float64)
    assert stats.kstest(z, cdf).pvalue > 1e-3


def test_normal_moments_within_standard_errors():
    z = np.asarray(fastrand.normal(jax.random.key(0), (N,)), np.float64)
    se = 1 / np.sqrt(N)
    assert abs(z.mean()) < 4 * se
    assert abs(z.var() - 1) < 4 * np.sqrt(2) * se
    assert abs((z**3).mean()) < 4 * np.sqrt(15) * se
    assert abs((z**4).mean() - 3) < 4 * np.sqrt(96) * se


def test_bits_are_uniform_and_serially_uncorrelated():
    b = np.asarray(fastrand.bits(jax.random.key(1), (N,)), np.int64)
    counts = np.bincount(b >> 24, minlength=256)  # top byte: 256 equiprobable cells
    assert stats.chisquare(counts).pvalue > 1e-3
    for bit in (0, 7, 16, 31):  # every bit position is a fair coin
        assert abs(((b >> bit) & 1).mean() - 0.5) < 4 * 0.5 / np.sqrt(N)
    u = (b + 0.5) / 2**32
    for lag in (1, 2, 3, 64):
        r = np.corrcoef(u[:-lag], u[lag:])[0, 1]
        assert abs(r) < 4 / np.sqrt(N), (lag, r)


def test_keys_give_reproducible_and_independent_streams():
    k = jax.random.key(5)
    a = np.asarray(fastrand.normal(k, (1000,)))
    np.testing.assert_array_equal(a, np.asarray(fastrand.normal(k, (1000,))))
    other = np.asarray(fastrand.normal(jax.random.fold_in(k, 1), (N,)), np.float64)
    same = np.asarray(fastrand.normal(k, (N,)), np.float64)
    assert abs(np.corrcoef(same, other)[0, 1]) < 4 / np.sqrt(N)
    # under vmap, each key its own stream, equal to the unbatched draw
    ks = jax.random.split(k, 3)
    batched = np.asarray(jax.vmap(lambda kk: fastrand.normal(kk, (7, 5)))(ks))
    np.testing.assert_array_equal(batched[2], np.asarray(fastrand.normal(ks[2], (7, 5))))


def test_split_and_fold_in_give_distinct_reproducible_independent_keys():
    k = jax.random.key(11)
    kids = fastrand.split(k, 4)
    np.testing.assert_array_equal(jax.random.key_data(kids), jax.random.key_data(fastrand.split(k, 4)))
    words = {tuple(np.asarray(jax.random.key_data(x)).tolist())
             for x in [k, *kids, fastrand.fold_in(k, 0), fastrand.fold_in(k, 1)]}
    assert len(words) == 7  # no child repeats its parent, a sibling, or a fold_in
    streams = [np.asarray(fastrand.normal(x, (N,)), np.float64)
               for x in [k, kids[0], kids[1], fastrand.fold_in(k, 0)]]
    for a in range(4):
        for b in range(a + 1, 4):
            assert abs(np.corrcoef(streams[a], streams[b])[0, 1]) < 4 / np.sqrt(N)
    batched = jax.vmap(lambda kk: jax.random.key_data(fastrand.split(kk, 3)))(kids)
    np.testing.assert_array_equal(np.asarray(batched[1]),
                                  np.asarray(jax.random.key_data(fastrand.split(kids[1], 3))))


def test_categorical_randint_and_gumbel_match_their_laws():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    idx = np.asarray(fastrand.categorical(jax.random.key(2), np.log(p), shape=(N,)))
    assert stats.chisquare(np.bincount(idx, minlength=4), N * p).pvalue > 1e-3
    r = np.asarray(fastrand.randint(jax.random.key(3), (N,), 3, 10))
    assert r.min() == 3 and r.max() == 9
    assert stats.chisquare(np.bincount(r - 3, minlength=7)).pvalue > 1e-3
    g = np.asarray(fastrand.gumbel(jax.random.key(4), (N,)), np.float64)
    assert stats.kstest(g, stats.gumbel_r.cdf).pvalue > 1e-3


def test_log_matches_float64_on_every_unit_value_scale():
    # every exponent fastrand's uniforms reach (2**-25 .. 1), and values just below 1
    b = np.arange(0, 2**32, 4099, dtype=np.uint64).astype(np.uint32)
    u = np.asarray(fastrand._unit(b))
    x = np.concatenate([u, np.float32(2.0) ** -np.arange(1, 26, dtype=np.float32),
                        np.nextafter(np.float32(1), np.float32(0), dtype=np.float32)[None]])
    ref = np.log(x.astype(np.float64))
    got = np.asarray(fastrand._log(x), np.float64)
    assert (np.abs(got - ref) <= 1.5e-7 * np.abs(ref) + 1e-12).all()


def test_as_a_jax_prng_it_gives_the_same_streams_and_the_laws_of_jax_random():
    import jax.numpy as jnp

    words = jax.random.key_data(jax.random.key(11))
    k3 = jax.random.wrap_key_data(words)  # threefry key: fastrand's functions read its words
    kf = jax.random.wrap_key_data(words, impl=fastrand.IMPL)
    np.testing.assert_array_equal(jax.random.bits(kf, (100,), jnp.uint32),
                                  fastrand.bits(k3, (100,)))
    np.testing.assert_array_equal(jax.random.key_data(jax.random.split(kf, 5)),
                                  jax.random.key_data(fastrand.split(k3, 5)))
    np.testing.assert_array_equal(jax.random.key_data(jax.random.fold_in(kf, 7)),
                                  jax.random.key_data(fastrand.fold_in(k3, 7)))
    # jax.random's own samplers on it: normal moments, uniform KS, 8-bit draws uniform.
    x = np.asarray(jax.random.normal(kf, (200_000,)), np.float64)
    assert abs(x.mean()) < 4 / np.sqrt(len(x)) and abs(x.var() - 1) < 4 * np.sqrt(2 / len(x))
    assert stats.kstest(np.asarray(jax.random.uniform(kf, (50_000,))), "uniform").pvalue > 1e-3
    counts = np.bincount(np.asarray(jax.random.bits(kf, (256_000,), jnp.uint8)), minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-3
    # Keys from split are distinct and their streams uncorrelated, batched or not.
    ks = jax.random.split(kf, 1000)
    assert len({tuple(w) for w in np.asarray(jax.random.key_data(ks))}) == 1000
    y = np.asarray(jax.vmap(lambda k: jax.random.normal(k, (2,)))(ks))
    assert abs(np.corrcoef(y[:, 0], y[:, 1])[0, 1]) < 4 / np.sqrt(1000)
    seeded = jax.random.key(3, impl=fastrand.IMPL)
    assert not np.array_equal(jax.random.key_data(seeded),
                              jax.random.key_data(jax.random.key(4, impl=fastrand.IMPL)))
