"""Simulation health: non-finite values are always reported (never silent NaNs), the bound that
lets a batch skip reading its rows is sound, and a batch split over devices gives the same data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from engine.scm.simulator import SimulationError, Simulator
from engine.spec.scm import ScmSpec

ROOT = Path(__file__).resolve().parents[1]


def spec(coef: float, noise: str = "gaussian", standardize: bool = False, d: int = 8):
    return ScmSpec.model_validate({
        "graphs": {"kind": "chain"}, "n_nodes": d, "n_obs": 300,
        "mechanism": {"kind": "linear", "coef": {"dist": "signed_uniform", "low": coef,
                                                 "high": 2 * coef}},
        "noise": {"kind": noise, "scale": {"dist": "uniform", "low": 0.5, "high": 2.0}},
        "interventions": {"kind": "hard", "rows_per_node": 1}, "standardize": standardize,
    })


@pytest.mark.parametrize("noise", ["gaussian", "laplace", "uniform"])
@pytest.mark.parametrize("standardize", [False, True])
def test_bound_holds_on_every_row(noise, standardize):
    _, data, diag = Simulator(spec(1.5, noise, standardize)).with_diagnostics(jax.random.key(1), 64)
    bound, top = np.asarray(diag.obs_bound), np.abs(np.asarray(data.obs)).max((1, 2))
    assert np.isfinite(bound).all() and (top <= bound).all()
    assert (np.asarray(diag.nonfinite) == 0).all()


def test_heavy_tails_have_no_bound_and_are_counted():
    _, _, diag = Simulator(spec(1.0, "student_t")).with_diagnostics(jax.random.key(1), 8)
    assert np.isinf(np.asarray(diag.obs_bound)).all()


def test_overflow_is_counted_and_raised():
    # a chain of 30 coefficients of 1e3..2e3 reaches 1e90: far past float32
    sim = Simulator(spec(1e3, d=30))
    _, data, diag = sim.with_diagnostics(jax.random.key(0), 4)
    bad = (~np.isfinite(np.asarray(data.obs))).sum((1, 2)) + (
        ~np.isfinite(np.asarray(data.int_values))).sum((1, 2))
    assert bad.min() > 0 and (np.asarray(diag.nonfinite) == bad).all()
    with pytest.raises(SimulationError, match="non-finite"):
        sim(jax.random.key(0), 4)


SCRIPT = r"""
import json, sys
import jax, numpy as np
sys.path.insert(0, sys.argv[1])
from test_scm_health import spec
from engine.scm.simulator import Simulator
from engine.spec.scm import ScmSpec
assert len(jax.devices()) == 4
rff = ScmSpec.model_validate({"graphs": {"kind": "erdos_renyi", "edges_per_node": 1.0},
    "n_nodes": 12, "mechanism": {"kind": "rff", "features": 16}, "n_obs": 50,
    "interventions": {"kind": "hard", "rows_per_node": 1}})
out = {"max_diff": 0.0}
for s in (spec(1.5), rff, spec(1e3, d=30)):
    one = Simulator(s, devices=jax.devices()[:1])
    four = Simulator(s)
    for n in (8, 6):  # 6 does not divide over 4 devices
        a, b = one.with_diagnostics(jax.random.key(2), n), four.with_diagnostics(jax.random.key(2), n)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            x, y = np.asarray(x), np.asarray(y)
            assert x.shape == y.shape, (x.shape, y.shape)
            if x.dtype.kind == "f":
                both = np.isfinite(x) & np.isfinite(y)
                assert (np.isfinite(x) == np.isfinite(y)).all()
                out["max_diff"] = max(out["max_diff"], float(np.abs(x[both] - y[both]).max(initial=0)
                                                             / (1 + np.abs(x)[both].max(initial=0))))
            else:
                assert (x == y).all()
    obs = four.with_diagnostics(jax.random.key(2), 8)[1].obs
    out["devices"] = len({sh.device for sh in obs.addressable_shards})
print(json.dumps(out))
"""


@pytest.mark.slow  # compiles three simulators twice in a subprocess
def test_four_devices_give_the_same_graphs_and_data():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT / "tests")], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4 and out["max_diff"] < 1e-5, out
