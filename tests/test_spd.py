"""The models' positive-definite inverse: exact against LAPACK in float64, the right derivative,
and no LAPACK call left in a training step (a batched LU there deadlocked XLA's CPU runtime:
engine/models/spd.py)."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.models.spd import block_spd_inverse, spd_inverse
from engine.spec.model import AviciModel, StatsModel

ROOT = Path(__file__).resolve().parents[1]


def _ridged_correlations(batch, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, 50, d))
    x[..., -1] = x[..., 0] + 0.05 * x[..., -1]  # near-collinear: a badly conditioned matrix
    c = np.einsum("bni,bnj->bij", x, x) / 50
    s = np.sqrt(np.einsum("bii->bi", c))
    return c / (s[:, :, None] * s[:, None, :]) + 1e-2 * np.eye(d)


@pytest.mark.parametrize("d", [1, 2, 7, 30])
def test_inverse_matches_lapack(d):
    with jax.enable_x64(True):
        a = _ridged_correlations(3, d, seed=d)
        got = np.asarray(jax.jit(spd_inverse)(jnp.asarray(a)))
        np.testing.assert_allclose(got, np.linalg.inv(a), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(np.einsum("bij,bjk->bik", got, a), np.broadcast_to(np.eye(d), a.shape), atol=1e-9)


@pytest.mark.parametrize("m,b", [(1, 7), (5, 1), (6, 7)])
def test_block_inverse_matches_lapack(m, b):
    with jax.enable_x64(True):
        a = _ridged_correlations(2, m * b, seed=m + b)
        got = np.asarray(jax.jit(jax.vmap(block_spd_inverse))(jnp.asarray(a).reshape(2, m, b, m, b)))
        np.testing.assert_allclose(got.reshape(a.shape), np.linalg.inv(a), rtol=1e-9, atol=1e-9)


def test_derivative_is_the_closed_form_and_matches_finite_differences():
    with jax.enable_x64(True):
        a = jnp.asarray(_ridged_correlations(1, 5, seed=1)[0])
        f = lambda m: jnp.sum(jnp.tanh(spd_inverse(m)))  # noqa: E731
        g = np.asarray(jax.grad(f)(a))
        np.testing.assert_allclose(g, jax.grad(lambda m: jnp.sum(jnp.tanh(jnp.linalg.inv(m))))(a), rtol=1e-8)
        e = np.zeros((5, 5))
        e[1, 3] = 1e-6
        fd = (f(a + e) - f(a - e)) / 2e-6
        assert abs(fd - g[1, 3]) <= 1e-5 * max(1.0, abs(g[1, 3]))


@pytest.mark.parametrize(
    "spec",
    [StatsModel(kind="stats", dim=16, layers=1, heads=2),
     StatsModel(kind="stats", dim=16, layers=1, heads=2, quadratic=True, triplets=True, additive=True),
     AviciModel(kind="avici", dim=16, layers=2, heads=2, key_size=8)],
    ids=["stats", "stats-every-statistic", "avici"],
)
def test_training_step_calls_no_lapack(spec):
    """The compiled gradient of the graph head has no LAPACK custom call (lu, getrf, potrf)."""
    model = spec.build(jax.random.PRNGKey(0))
    x = jnp.zeros((4, 20, 6, 2)).at[..., 0].set(jax.random.normal(jax.random.PRNGKey(1), (4, 20, 6)))
    rows, vars_ = jnp.ones((4, 20), bool), jnp.ones((4, 6), bool)

    params, static = eqx.partition(model, eqx.is_array)

    def loss(p):
        m = eqx.combine(p, static)
        return jnp.mean(jax.vmap(m.graph)(x, rows, vars_) ** 2)

    hlo = jax.jit(jax.grad(loss)).lower(params).compile().as_text()
    targets = set(re.findall(r'custom_call_target="([^"]+)"', hlo))
    assert not {t for t in targets if any(c in t.lower() for c in ("lapack", "getrf", "potrf", "lu"))}, targets


@pytest.mark.slow
def test_scanned_training_at_30_variables_does_not_hang():
    """The call that hung: the general spec's scan of 32 training steps at up to 30 variables
    (every thread in a futex wait, CPU time stopped). It now finishes; a hang is a timeout."""
    script = textwrap.dedent(
        """
        import jax
        from pathlib import Path
        from engine.spec.loader import load
        from engine.train.trainer import Trainer
        from engine.train.sources import build_phases
        spec = load(Path("specs/general.toml")).spec
        trainer = Trainer(spec, jax.devices()[:1])
        state = trainer.init(jax.random.PRNGKey(0))
        out = trainer.run_steps(state, build_phases(spec)[0].source, jax.random.PRNGKey(1), 32)
        jax.block_until_ready(out)
        print("done", float(out[1][-1]))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=480)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "done" in done.stdout
