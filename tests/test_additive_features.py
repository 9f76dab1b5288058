"""Additive nonlinear dependence statistics (engine/models/additive.py): equal to brute-force
regressions, blind to padding and interventional rows, and jit/vmap-able."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.models.additive import RIDGE, additive_features, basis


def _nonlinear(n: int, seed: int) -> np.ndarray:
    """0 -> 2 (sin), 1 -> 2 (square), 2 -> 4 (tanh), 3 independent: correlations miss 1 -> 2."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    x[:, 2] += np.sin(2 * x[:, 0]) + 0.8 * x[:, 1] ** 2
    x[:, 4] += np.tanh(2 * x[:, 2])
    return x


def _brute_force(x: np.ndarray) -> np.ndarray:
    """Each regression solved on its own: per variable its basis, orthonormalised, then ridge
    least squares of z_t on the chosen variables' bases."""
    n, d = x.shape
    z = (x - x.mean(0)) / (x.std(0) + 1e-6)
    B = np.asarray(basis(jnp.asarray(z)), np.float64)
    B = B - B.mean(0)
    for j in range(d):  # Gram-Schmidt, twice, each column scaled to sqrt(mean square + 1e-6)
        for k in range(B.shape[2]):
            for _ in range(2):
                for m in range(k):
                    B[:, j, k] -= (B[:, j, m] @ B[:, j, k] / n) * B[:, j, m]
            B[:, j, k] /= np.sqrt((B[:, j, k] ** 2).mean() + 1e-6)

    def rss(t, S, orthonormal=False):
        yy = (z[:, t] ** 2).mean() + 1e-6
        if not S:
            return yy
        F = B[:, S].reshape(n, -1)
        g = F.T @ z[:, t] / n
        gram = np.eye(F.shape[1]) if orthonormal else F.T @ F / n  # one block: ~I
        return yy - g @ np.linalg.solve(gram + RIDGE * np.eye(F.shape[1]), g)

    out = np.zeros((d, d, 2))
    for j in range(d):
        for t in range(d):
            if j != t:
                rest = [k for k in range(d) if k != t]
                out[j, t] = (np.log(rss(t, [k for k in rest if k != j]) / rss(t, rest)),
                             np.log(rss(t, []) / rss(t, [j], orthonormal=True)))
    return out


def _call(x, rows=None, var=None):
    n, d = x.shape[:2]
    xx = np.stack([x, np.zeros_like(x)], -1) if x.ndim == 2 else x
    return np.asarray(additive_features(jnp.asarray(xx), jnp.ones(n, bool) if rows is None else rows,
                                        jnp.ones(d, bool) if var is None else var))


def test_equal_to_brute_force_regressions():
    x = _nonlinear(400, 0)
    with jax.enable_x64(True):
        f = np.asarray(additive_features(jnp.asarray(np.stack([x, np.zeros_like(x)], -1)),
                                         jnp.ones(400, bool), jnp.ones(5, bool)))
    np.testing.assert_allclose(f, _brute_force(x), atol=1e-6)
    f32 = _call(x.astype(np.float32))
    np.testing.assert_allclose(f32, _brute_force(x), atol=2e-3)  # what the model computes


def test_see_what_correlations_miss():
    """1 -> 2 through a square: |correlation| ~ 0, but the marginal and drop statistics are
    large; the independent 3 scores ~0 with 2 either way."""
    x = _nonlinear(2000, 1)
    f = _call(x.astype(np.float32))
    assert abs(np.corrcoef(x[:, 1], x[:, 2])[0, 1]) < 0.1
    assert f[1, 2, 0] > 0.2 and f[1, 2, 1] > 0.2
    assert f[3, 2].max() < 0.01 and f[2, 3].max() < 0.01
    assert f[0, 4, 0] < 0.01  # 0 reaches 4 only through 2: nothing left given the others


def test_padding_and_interventional_rows_change_nothing():
    x = _nonlinear(300, 2).astype(np.float32)
    want = _call(x)
    padded = np.concatenate([x, np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32)], 1)
    var = jnp.array([1, 1, 1, 1, 1, 0, 0], bool)
    got = _call(padded, var=var)
    np.testing.assert_allclose(got[:5, :5], want, atol=2e-4)
    assert not got[5:].any() and not got[:, 5:].any()
    # 40 more rows intervening on variable 2 (indicator 1), and 20 padded rows: ignored
    extra = np.random.default_rng(1).normal(size=(60, 5)).astype(np.float32) * 9
    cells = np.concatenate([np.stack([x, np.zeros_like(x)], -1),
                            np.stack([extra, np.zeros_like(extra)], -1)])
    cells[300:340, :, 1] = np.eye(5, dtype=np.float32)[2]
    rows = jnp.asarray(np.r_[np.ones(340, bool), np.zeros(20, bool)])
    np.testing.assert_allclose(_call(cells, rows=rows), want, atol=2e-4)


def test_batched_and_jitted_at_50_variables():
    """The vmapped, jitted call (as a training step would make it) runs, is finite and equals
    the single call (1000 rows: more than the 350 basis columns, so the regressions are posed)."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 1000, 50, 2)).astype(np.float32)).at[..., 1].set(0)
    f = jax.jit(jax.vmap(additive_features))(x, jnp.ones((4, 1000), bool), jnp.ones((4, 50), bool))
    assert f.shape == (4, 50, 50, 2) and np.isfinite(np.asarray(f)).all()
    one = additive_features(x[1], jnp.ones(1000, bool), jnp.ones(50, bool))
    np.testing.assert_allclose(np.asarray(f[1]), np.asarray(one), atol=1e-4)
