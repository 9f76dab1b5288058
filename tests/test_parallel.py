"""Data parallelism: 4 CPU devices give the 1-device losses, with the batch really split."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys, tempfile
sys.path.insert(0, sys.argv[1])
import jax, numpy as np
from jax.sharding import PartitionSpec as P
from test_train import synthetic_demos, TINY, SMOKE
from engine.spec.loader import load
from engine.train.trainer import Trainer
from engine.registry import read_jsonl

assert len(jax.devices()) == 4
spec = load(SMOKE, TINY + ["train.steps=4", "train.batch_size=8"]).spec
demos, val = synthetic_demos(), synthetic_demos(seed=1)
out = {}
for n in (1, 4):
    t = Trainer(spec, jax.devices()[:n])
    work = tempfile.mkdtemp()
    state = t.fit(demos, val, work, warn=lambda m: None)
    out[n] = {"loss": [[r["loss"], r["loss_mean"], r["val_loss"]] for r in read_jsonl(work + "/metrics.jsonl")],
              "params": [np.asarray(a).ravel().tolist() for a in jax.tree.leaves(state.model) if hasattr(a, "dtype") and a.dtype == np.float32]}
    if n == 4:
        _, key = jax.random.split(jax.random.PRNGKey(spec.seed))
        batch = t.sample_batch(demos, key, 0)
        out["spec"] = list(batch.x.sharding.spec)  # mesh axis per array axis
        out["shards"] = sorted({tuple(s.data.shape) for s in batch.x.addressable_shards})
        out["devices"] = len({s.device for s in batch.x.addressable_shards})
print(json.dumps(out))
"""


@pytest.mark.slow  # two compiles in a subprocess: ~25 s idle, 80 s on the shared 2-core box
def test_four_devices_match_one():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT / "tests")], capture_output=True, text=True, env=env,
        cwd=ROOT, timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    one, four = out["1"], out["4"]
    import numpy as np

    np.testing.assert_allclose(np.array(four["loss"]), np.array(one["loss"]), rtol=1e-5)
    for a, b in zip(four["params"], one["params"]):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-6)
    assert out["spec"][:1] == ["data"] and all(a is None for a in out["spec"][1:]), out["spec"]
    assert out["devices"] == 4 and [list(s) for s in out["shards"]] == [[2] + list(out["shards"][0][1:])]
