"""Training infrastructure: schedules, accumulation, EMA, non-finite skip, early stopping, logs."""

import struct
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.data.demos import Demonstrations
from engine.spec.loader import SpecError, load
from engine.train import checkpoint
from engine.train.schedules import piecewise, warmup_cosine
from engine.train.trainer import Trainer, TrainingStopped

SMOKE = Path(__file__).resolve().parents[1] / "specs" / "smoke.toml"
TINY = ["model.dim=8", "model.layers=0", "model.heads=1", "train.log_every=2", "train.checkpoint_every=2"]


def synthetic_demos(n_graphs=12, d=4, n_obs=16, k=4, seed=0, per_graph=2) -> Demonstrations:
    """Random data with random parent labels: enough to exercise the machinery."""
    rng = np.random.default_rng(seed)
    g = n_graphs
    rows_mask = np.zeros((g, k, d), bool)
    rows_mask[:, np.arange(k), np.arange(k) % d] = True
    target = rng.integers(0, d, g)
    parents = rng.random((g, d)) < 0.4
    parents[np.arange(g), target] = False
    adjacency = np.zeros((g, d, d), bool)
    adjacency[np.arange(g), :, target] = parents
    return Demonstrations.from_numpy(dict(
        adjacency=adjacency,
        obs=rng.normal(size=(g, n_obs, d)).astype(np.float32),
        rows_values=rng.normal(size=(g, k, d)).astype(np.float32),
        rows_mask=rows_mask, rows_valid=np.ones((g, k), bool), var_mask=np.ones((g, d), bool),
        target=target.astype(np.int32), parents=parents, graph_id=np.arange(g, dtype=np.int32),
        demo_graph=np.repeat(np.arange(g, dtype=np.int32), per_graph),
        demo_k=np.tile(np.linspace(k // 2, k, per_graph).astype(np.int32), g),
        expert=rng.random((g * per_graph, d)).astype(np.float32),
    ))


def trainer(*overrides):
    return Trainer(load(SMOKE, TINY + list(overrides)).spec, jax.devices()[:1])


def params(model):
    return [np.asarray(a) for a in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))]


def test_schedules_match_closed_forms():
    s = warmup_cosine(1.0, warmup=10, decay_steps=110, end=0.1)
    assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(0.5)
    assert float(s(10)) == pytest.approx(1.0)
    assert float(s(60)) == pytest.approx(0.1 + 0.45 * (1 + np.cos(np.pi * 0.5)))
    assert float(s(110)) == pytest.approx(0.1) and float(s(500)) == pytest.approx(0.1)
    p = piecewise([1.0, 0.5, 0.25], [10, 20])
    assert [float(p(t)) for t in (0, 9, 10, 19, 20, 99)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_train_spec_kinds_and_errors():
    spec = load(SMOKE, ['train.optimizer={ kind = "lamb", lr = { kind = "warmup_cosine", peak = 0.01, warmup = 5 } }']).spec
    assert spec.train.optimizer.lr.build(40)(5) == pytest.approx(0.01)
    spec.train.build_optimizer()  # optax lamb with a schedule
    with pytest.raises(SpecError, match="multiple of accumulate"):
        load(SMOKE, ["train.accumulate=3"])
    with pytest.raises(SpecError, match="one more entry"):
        load(SMOKE, ['train.optimizer={ kind = "adam", lr = { kind = "piecewise", values = [0.1], boundaries = [5] } }'])


@pytest.mark.slow
def test_accumulation_gives_the_same_update():
    demos = synthetic_demos()
    key = jax.random.PRNGKey(3)
    out = []
    for k in (1, 4):
        t = trainer(f"train.accumulate={k}")
        state, losses, _ = t.run_steps(t.init(jax.random.PRNGKey(0)), demos, key, 3)
        out.append((params(state.model), np.asarray(losses)))
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-5)
    for a, b in zip(out[0][0], out[1][0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_ema_follows_the_warmed_up_recursion():
    t = trainer("train.ema=0.9")
    demos, key = synthetic_demos(), jax.random.PRNGKey(1)
    state = t.init(jax.random.PRNGKey(0))
    expected = params(state.model)
    for step in range(1, 4):
        state, _, _ = t.run_steps(state, demos, key, 1)
        decay = min(0.9, (1 + step) / (10 + step))
        expected = [decay * e + (1 - decay) * p for e, p in zip(expected, params(state.model))]
    for a, b in zip(params(state.ema), expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert state.eval_model is state.ema


def test_nonfinite_steps_are_skipped_and_named(tmp_path):
    arrays = {k: np.array(v) for k, v in synthetic_demos().to_numpy().items()}
    arrays["obs"][0] = np.nan  # every batch that draws graph 0 gives a NaN loss
    demos = Demonstrations.from_numpy(arrays)
    t = trainer("train.on_nonfinite=\"skip\"", "train.steps=6", "train.augment=false")
    _, data_key = jax.random.split(jax.random.PRNGKey(0))
    poisoned = [s + 1 for s in range(6) if np.isnan(np.asarray(t.sample_batch(demos, data_key, s).x)).any()]
    assert 0 < len(poisoned) < 6
    messages = []
    state = t.fit(demos, None, tmp_path, warn=messages.append)
    assert int(state.skipped) == len(poisoned) == t.summary["skipped_steps"]
    assert all(np.isfinite(p).all() for p in params(state.model))
    named = sorted(int(s) for m in messages for s in m.split("step(s) ")[1].split(" (")[0].split(", "))
    assert named == poisoned

    stop = trainer("train.steps=6", "train.augment=false")
    with pytest.raises(TrainingStopped, match=f"at step {poisoned[0]}"):
        stop.fit(demos, None, tmp_path / "stop", warn=lambda m: None)


def test_early_stopping_keeps_the_best_model_and_survives_resume(tmp_path):
    # min_delta so large that only the first log point counts as an improvement.
    t = trainer("train.early_stopping={ patience = 2, min_delta = 1e9 }", "train.keep=1", "train.steps=40")
    demos, val = synthetic_demos(), synthetic_demos(seed=1)
    state = t.fit(demos, val, tmp_path, warn=lambda m: None)
    assert t.summary["stopped_early"] and t.summary["steps"] == 6 and t.summary["best_step"] == 2
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["best.eqx", "ckpt-000000006.eqx"]  # keep = 1 newest, plus the best
    header, best = checkpoint.read(tmp_path / "checkpoints" / "best.eqx", state.model)
    assert header["step"] == 2
    shipped = t.final_model(state, tmp_path)
    assert all((a == b).all() for a, b in zip(params(shipped), params(best)))
    assert not all((a == b).all() for a, b in zip(params(shipped), params(state.model)))
    again = trainer("train.early_stopping={ patience = 2, min_delta = 1e9 }", "train.keep=1", "train.steps=40")
    assert int(again.fit(demos, val, tmp_path, warn=lambda m: None).step) == 6  # no further steps


@pytest.mark.slow
def test_bf16_loss_is_close_and_state_stays_float32():
    demos, key = synthetic_demos(), jax.random.PRNGKey(2)
    losses = []
    for precision in ("fp32", "bf16"):
        t = trainer(f'train.precision="{precision}"')
        state, loss, _ = t.run_steps(t.init(jax.random.PRNGKey(0)), demos, key, 2)
        losses.append(np.asarray(loss))
        dtypes = {a.dtype for a in jax.tree.leaves(eqx.filter((state.model, state.opt_state), eqx.is_inexact_array))}
        assert dtypes == {jnp.dtype("float32")}
    np.testing.assert_allclose(losses[0], losses[1], rtol=3e-2)
    assert not np.array_equal(losses[0], losses[1])  # bf16 really ran


def _events(path: Path) -> list[bytes]:
    """The records of a TFRecord file (length, crc, data, crc)."""
    data, out, i = path.read_bytes(), [], 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i : i + 8])
        out.append(data[i + 12 : i + 12 + n])
        i += 16 + n
    return out


def test_logs_jsonl_and_tensorboard(tmp_path):
    t = trainer("train.steps=4")
    t.fit(synthetic_demos(), synthetic_demos(seed=1), tmp_path, warn=lambda m: None)
    from engine.registry import read_jsonl

    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4]
    assert all(r["examples_per_s"] > 0 and "val_loss" in r and r["lr"] == 1e-3 for r in records)
    from tensorboardX.proto.event_pb2 import Event

    files = list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    # one TensorBoard run per spec and train stage: tensorboard/<spec name>/<stage folder>/
    assert files and all(f.parent.parent.name == t.spec.name for f in files)
    events = [Event.FromString(r) for f in files for r in _events(f)]
    scalars = {(e.step, v.tag): v.simple_value for e in events for v in e.summary.value}
    assert scalars[(4, "val_loss")] == pytest.approx(records[-1]["val_loss"])


def test_pace_takes_whole_chunks_while_they_fit_and_stops_at_the_deadline():
    import time

    from engine.train.trainer import Pace

    pace = Pace(step_s=0.01, target_s=30.0)
    assert pace.steps(50, None) == 50  # 0.5 s: the whole chunk
    pace.record(50, 5.0)  # the first call compiles: not a measurement
    assert pace.step_s == 0.01
    pace.record(50, 100.0)  # 2 s per step, measured: 15 fit in 30 s
    assert pace.steps(50, None) == 8  # a power of two: few compiled programs
    assert pace.steps(50, time.time() + 4.5) == 2
    assert pace.steps(50, time.time() - 1) == 1  # past the deadline: one step, then stop


def test_the_wall_time_budget_stops_within_a_chunk_and_resumes_bit_for_bit(tmp_path):
    """A 20-step chunk; the budget is spent: training stops after one step with a checkpoint
    there (not after the chunk), and the resumed run, in calls of other lengths, ends with the
    very parameters of an uninterrupted one."""
    demos = synthetic_demos()
    sets = ["train.steps=40", "train.log_every=20", "train.checkpoint_every=20", "train.tensorboard=false"]
    reference = trainer(*sets).fit(demos, None, tmp_path / "whole", warn=lambda m: None)
    with pytest.raises(TrainingStopped, match="at step 1 of 40"):
        trainer(*sets).fit(demos, None, tmp_path / "cut", deadline=time.time() - 1, warn=lambda m: None)
    stepwise = trainer(*sets)
    stepwise.call_seconds = 0.0  # every call one step
    resumed = stepwise.fit(demos, None, tmp_path / "cut", warn=lambda m: None)
    assert int(resumed.step) == 40
    for a, b in zip(params(reference.model), params(resumed.model)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("config", [("stats", 20, 100, 64, 2, 16, False), ("stats", 20, 200, 64, 2, 8, True),
                                    ("avici", 10, 200, 32, 2, 4, False)])
def test_the_plans_step_estimate_is_within_a_factor_of_the_measured_time(config):
    """benchmarks/plan.py prints the whole grid (0.51-1.62 measured/estimated when calibrated);
    here a wide band, as machines are shared and timings noisy. The last field: the whole-graph
    head."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from plan import measure

    estimate, measured, _ = measure(*config, steps=5)
    assert 1 / 3 < measured / estimate < 3, (estimate, measured)
