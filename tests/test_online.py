"""Online training data and curricula: fresh simulated graphs per step, stages over sizes and
mechanisms, exact resume, and spec errors for bad curriculum entries."""

import math
import time
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest

from engine.data.online import simulated_batch
from engine.plan import stage_hashes
from engine.registry import read_jsonl
from engine.scm.simulator import Simulator
from engine.spec.loader import SpecError, load
from engine.train.sources import build_phases
from engine.train.trainer import Trainer, TrainingStopped


def auroc(scores, labels) -> float:
    """Share of (positive, negative) pairs ranked right, ties 1/2 (Mann-Whitney)."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    diff = s[y][:, None] - s[~y][None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


SPECS = Path(__file__).resolve().parents[1] / "specs"
ONLINE = ["data.mode=online", "data.split={ train = 0.0, validation = 0.5, heldout = 0.5 }"]
TINY = ["model.dim=8", "model.layers=0", "model.heads=1", "train.batch_size=4"]
CURRICULUM = 'train.curriculum=[{ steps = 3, n_nodes = 3 }, { steps = 3, n_nodes = 5, mechanism = { kind = "tanh" } }]'


def spec_of(*overrides):
    return load(SPECS / "smoke.toml", list(overrides)).spec


def params(model):
    return [np.asarray(a) for a in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))]


def test_simulated_batches_carry_the_true_graph_and_a_row_prefix():
    spec = spec_of(*ONLINE)
    sim = Simulator(spec.scm)
    batch = jax.jit(lambda k: simulated_batch(sim, k, 16))(jax.random.PRNGKey(0))
    again = jax.jit(lambda k: simulated_batch(sim, k, 16))(jax.random.PRNGKey(0))
    assert all((a == b).all() for a, b in zip(jax.tree.leaves(batch), jax.tree.leaves(again)))
    adj, target = np.asarray(batch.adjacency), np.asarray(batch.target)
    parents = np.asarray(batch.parents)
    np.testing.assert_array_equal(parents, adj[np.arange(16), :, target])
    np.testing.assert_array_equal(np.asarray(batch.expert), parents.astype(np.float32))
    assert parents.sum(1).min() >= 1  # every target has a parent
    n_obs, x = spec.scm.n_obs, np.asarray(batch.x)
    used = np.asarray(batch.row_mask)[:, n_obs:]
    n_vars = np.asarray(batch.var_mask).sum(1)
    valid = 2 * (n_vars - 1)  # rows_per_node = 2 on every non-target node
    assert (used.sum(1) >= 1).all() and (used.sum(1) <= valid).all()
    assert len(set(used.sum(1).tolist())) > 1  # prefixes of different lengths
    np.testing.assert_array_equal(x[:, :n_obs, :, 1], 0)  # observational rows: no indicator
    assert (x[:, n_obs:, :, 1].sum(-1)[used] == 1).all()  # each interventional row: one node


def test_online_training_learns_structure(tmp_path):
    """A small stats model trained on fresh graphs ranks true parents on held-out graphs."""
    spec = spec_of(*ONLINE, "scm.n_nodes={ low = 4, high = 6 }", "model.dim=16", "model.layers=1",
                   "train.steps=150", "train.batch_size=16", 'train.optimizer={ kind = "adam", lr = 3e-3 }',
                   "train.log_every=50", "train.checkpoint_every=150", "train.tensorboard=false")
    t = Trainer(spec, jax.devices()[:1])
    model = t.fit(build_phases(spec), None, tmp_path, warn=lambda m: None).eval_model
    held = simulated_batch(Simulator(spec.scm), jax.random.PRNGKey(2024), 200)  # unseen key
    probs = np.asarray(jax.vmap(model)(held.x, held.row_mask, held.var_mask, held.target))
    d = probs.shape[1]
    mask = np.asarray(held.var_mask) & (np.arange(d)[None] != np.asarray(held.target)[:, None])
    score = auroc(probs[mask], np.asarray(held.parents)[mask])
    assert score > 0.75, score


def test_curriculum_switches_stages_at_the_declared_steps(tmp_path):
    spec = spec_of(*ONLINE, *TINY, CURRICULUM, "train.steps=6", "train.log_every=2",
                   "train.checkpoint_every=2", "train.tensorboard=false")
    phases = build_phases(spec)
    assert [(p.start, p.stop) for p in phases] == [(0, 3), (3, 6)]
    t = Trainer(spec, jax.devices()[:1])
    key = jax.random.PRNGKey(5)
    for phase, size in zip(phases, (3, 5)):
        for step in range(phase.start, phase.stop):
            batch = t.sample_batch(phase.source, key, step)
            assert batch.x.shape[2] == size  # padded to this stage's largest graph
            assert (np.asarray(batch.var_mask).sum(1) == size).all()
    messages = []
    state = t.fit(phases, None, tmp_path, warn=messages.append)
    assert int(state.step) == 6
    assert [m.split(":")[0] for m in messages] == [
        "curriculum stage 1/2 from step 0", "curriculum stage 2/2 from step 3"]
    assert "tanh" in messages[1] and "linear" in messages[0]
    assert [(r["step"], r["phase"]) for r in read_jsonl(tmp_path / "metrics.jsonl")] == [(2, 0), (4, 1), (6, 1)]


def test_fixed_mode_curriculum_draws_demonstrations_of_the_stage_sizes():
    from tests.test_train import synthetic_demos

    small = {k: np.array(v) for k, v in synthetic_demos(d=4, seed=0).to_numpy().items()}
    large = synthetic_demos(d=4, seed=1).to_numpy()
    small["var_mask"][:, 3] = False  # 3-variable graphs (padded to 4)
    small["parents"][:, 3] = False
    from engine.data.demos import Demonstrations

    both = {k: np.concatenate([small[k], large[k]]) for k in small}
    both["demo_graph"] = np.concatenate([small["demo_graph"], large["demo_graph"] + 12])
    demos = Demonstrations.from_numpy(both)
    spec = spec_of(*TINY, 'train.curriculum=[{ steps = 20, n_nodes = 3 }, { steps = 20 }]')
    phases = build_phases(spec, demos)
    t = Trainer(spec, jax.devices()[:1])
    sizes = lambda p, s: set(np.asarray(t.sample_batch(p.source, jax.random.PRNGKey(1), s).var_mask).sum(1).tolist())
    assert set().union(*(sizes(phases[0], s) for s in range(5))) == {3}
    assert set().union(*(sizes(phases[1], s) for s in range(20, 25))) == {3, 4}
    with pytest.raises(ValueError, match="no training demonstrations of graphs with \\[5\\] nodes"):
        build_phases(spec_of(*TINY, 'train.curriculum=[{ steps = 40, n_nodes = 5 }]'), demos)


@pytest.mark.slow
def test_online_resume_reproduces_the_parameters_bit_for_bit(tmp_path):
    overrides = [*ONLINE, *TINY, CURRICULUM, "train.steps=6", "train.log_every=2",
                 "train.checkpoint_every=2", "train.tensorboard=false"]
    whole = Trainer(spec_of(*overrides), jax.devices()[:1])
    reference = whole.fit(build_phases(whole.spec), None, tmp_path / "whole", warn=lambda m: None)
    # Stopped by the wall-time budget within the first chunk (a checkpoint at step 1), resumed.
    first = Trainer(spec_of(*overrides), jax.devices()[:1])
    with pytest.raises(TrainingStopped, match="at step 1 of 6"):
        first.fit(build_phases(first.spec), None, tmp_path / "cut", deadline=time.time() - 1,
                  warn=lambda m: None)
    second = Trainer(spec_of(*overrides), jax.devices()[:1])
    resumed = second.fit(build_phases(second.spec), None, tmp_path / "cut", warn=lambda m: None)
    assert int(resumed.step) == 6
    for a, b in zip(params(reference.model), params(resumed.model)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(reference.opt_state), jax.tree.leaves(resumed.opt_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_online_training_needs_neither_expert_nor_demonstrations():
    online = load(SPECS / "smoke.toml", ONLINE)
    stages = stage_hashes(online)
    assert stages["train"].upstream == ("simulate",)
    changed = stage_hashes(load(SPECS / "smoke.toml", ONLINE + ["expert.prior.max_parents=1",
                                                                "data.demos_per_graph=3"]))
    assert changed["expert"].hash != stages["expert"].hash
    # demos_per_graph also shapes the validation prefixes, so only the expert is irrelevant:
    only_expert = stage_hashes(load(SPECS / "smoke.toml", ONLINE + ["expert.prior.max_parents=1"]))
    assert only_expert["train"].hash == stages["train"].hash
    fixed = stage_hashes(load(SPECS / "smoke.toml"))
    assert fixed["train"].upstream == ("demonstrations",)


def _write(tmp_path, curriculum: str, data: str = "n_graphs = 20") -> Path:
    text = (SPECS / "smoke.toml").read_text()
    text = text.replace("n_graphs = 30\n", data + "\n").replace("split = { train = 0.6, validation = 0.2, heldout = 0.2 }\n", "")
    path = tmp_path / "spec.toml"
    path.write_text(text + "\n" + curriculum)
    return path


def _problem(path) -> str:
    with pytest.raises(SpecError) as err:
        load(path)
    return str(err.value)


def _line(path, needle: str, nth: int = 0) -> int:
    lines = [i + 1 for i, l in enumerate(path.read_text().splitlines()) if l.strip() == needle]
    return lines[nth]


@pytest.mark.parametrize("entries,mode,where,message", [
    ('[[train.curriculum]]\nsteps = 20\n\n[[train.curriculum]]\nsteps = 20\nmechanism = { kind = "tanh" }\n',
     "fixed", 1, 'mechanism can only change with data.mode = "online"'),
    ('[[train.curriculum]]\nsteps = 20\nn_nodes = 12\n\n[[train.curriculum]]\nsteps = 20\n',
     "fixed", 0, "n_nodes selects graphs of 12 nodes but the demonstrations' graphs have 3-5"),
    ('[[train.curriculum]]\nsteps = 20\n\n[[train.curriculum]]\nsteps = 20\nn_nodes = 2\n',
     "online", 1, "edges_per_node = 1 asks for more edges than a DAG of 2 nodes"),
    ('[[train.curriculum]]\nsteps = 20\nn_nodez = 4\n', "online", 0, "unknown key (did you mean 'n_nodes'?)"),
])
def test_bad_curriculum_entries_are_named_with_their_line(tmp_path, entries, mode, where, message):
    data = 'mode = "online"\nn_graphs = 20' if mode == "online" else "n_graphs = 20"
    path = _write(tmp_path, entries, data)
    problem = _problem(path)
    line = _line(path, "[[train.curriculum]]", where)
    assert problem.startswith(f"{path}:") and f"train.curriculum.{where}" in problem, problem
    assert message in problem, problem
    assert int(problem.split(":")[1]) >= line


def test_curriculum_steps_must_sum_to_train_steps_and_online_needs_no_training_graphs(tmp_path):
    path = _write(tmp_path, "[[train.curriculum]]\nsteps = 30\n\n[[train.curriculum]]\nsteps = 5\n")
    assert "train.curriculum: the stages' steps (30 + 5 = 35) must sum to train.steps = 40" in _problem(path)
    path = _write(tmp_path, "", 'mode = "online"\nn_graphs = 20\nsplit = { train = 0.5, validation = 0.25, heldout = 0.25 }')
    assert 'data.split: data.mode = "online" simulates its training data, so train must be 0' in _problem(path)
    online = load(_write(tmp_path, "", 'mode = "online"\nn_graphs = 20')).spec
    assert online.data.split.train == 0 and math.isclose(online.data.split.heldout, 0.8)
