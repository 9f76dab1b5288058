"""GRPO for the learned acquisition policy: the pure pieces against closed forms, the policy's
masking and distribution, training through the trainer (reward rises, beats random on held-out
graphs, resumes bit for bit)."""

import json
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.cbo import environment, grpo
from engine.cbo.learned import LearnedPolicy
from engine.cbo.policy import N_FEATURES, ActionDist, Policy
from engine.spec.scm import ScmSpec
from engine.train.trainer import TrainingStopped

# 5-node linear-Gaussian ER graphs, standardised; D_I = one row on each of 2 nodes
SCM = ScmSpec.model_validate({
    "n_nodes": 5, "n_obs": 50, "standardize": True,
    "graphs": [{"kind": "erdos_renyi", "edges_per_node": 1.0}],
    "mechanism": [{"kind": "linear", "coef": {"dist": "signed_uniform", "low": 0.5, "high": 2.0}}],
    "interventions": {"kind": "hard", "value": {"dist": "uniform", "low": -2.0, "high": 2.0},
                      "rows_per_node": 1, "count": 2},
})


def params(model):
    return [np.asarray(a) for a in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))]


# --------------------------------------------------------------------------- closed forms
def test_group_advantages_are_normalised_within_each_group():
    r = jnp.array([[1.0, 2.0, 3.0, 6.0], [5.0, 5.0, 5.0, 5.0]])
    std = np.sqrt((4 + 1 + 0 + 9) / 4)  # mean 3, population std
    np.testing.assert_allclose(grpo.group_advantages(r, 0.0)[0], np.array([-2, -1, 0, 3]) / std, rtol=1e-6)
    np.testing.assert_allclose(grpo.group_advantages(r, 0.5)[0], np.array([-2, -1, 0, 3]) / (std + 0.5), rtol=1e-6)
    np.testing.assert_array_equal(grpo.group_advantages(r, 1e-2)[1], np.zeros(4))  # a tie: no signal
    a = grpo.group_advantages(jax.random.normal(jax.random.PRNGKey(0), (3, 8)) * 7 + 2, 0.0)
    np.testing.assert_allclose(a.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(a.std(-1), 1.0, rtol=1e-5)


def test_clipped_objective_matches_closed_forms_on_both_signs():
    eps = 0.2
    # (ratio, advantage) -> (value, d value / d log pi)
    cases = [
        (1.5, 2.0, 2.4, 0.0),  # A > 0, ratio above 1 + eps: clipped at 1.2 * 2, no gradient
        (0.5, 2.0, 1.0, 1.0),  # A > 0, ratio below 1 - eps: unclipped (min picks rho A)
        (1.5, -1.0, -1.5, -1.5),  # A < 0, ratio above 1 + eps: unclipped (rho A is lower)
        (0.5, -1.0, -0.8, 0.0),  # A < 0, ratio below 1 - eps: clipped at 0.8 * -1
        (1.1, 1.0, 1.1, 1.1),  # inside the band: rho A either way
        (0.9, -3.0, -2.7, -2.7),
    ]
    ratio, adv, value, grad = (jnp.array(c) for c in zip(*cases))
    np.testing.assert_allclose(grpo.clipped_surrogate(ratio, adv, eps), value, rtol=1e-6)
    logp = jnp.log(ratio)
    g = jax.vmap(jax.grad(lambda lp, a: grpo.clipped_surrogate(jnp.exp(lp), a, eps)))(logp, adv)
    np.testing.assert_allclose(g, grad, rtol=1e-5, atol=1e-7)
    old = jnp.array([0.3, -1.0, 0.0, 2.0, 0.1, -0.2])
    assert float(grpo.clipped_objective(logp + old, old, adv, eps)) == pytest.approx(float(value.mean()), rel=1e-5)


def _hand_dist():
    # p(var) = .5, .3, .2 and a masked 4th; p(bin | var) over 3 bins
    pv = np.array([0.5, 0.3, 0.2])
    pb = np.array([[0.2, 0.3, 0.5], [1 / 3, 1 / 3, 1 / 3], [0.7, 0.2, 0.1], [0.6, 0.2, 0.2]])
    dist = ActionDist(jnp.array([*np.log(pv), -1e9], jnp.float32), jnp.asarray(np.log(pb), jnp.float32))
    return dist, pv, pb


def test_entropy_and_log_prob_match_closed_forms():
    dist, pv, pb = _hand_dist()
    h = lambda p: -np.sum(p * np.log(p))  # noqa: E731
    expected = h(pv) + pv[0] * h(pb[0]) + pv[1] * np.log(3) + pv[2] * h(pb[2])
    assert float(dist.entropy()) == pytest.approx(expected, rel=1e-5)
    assert float(jnp.exp(dist.log_prob(jnp.int32(0), jnp.int32(2)))) == pytest.approx(0.25, rel=1e-5)
    joint = np.exp(np.asarray(dist.log_prob(*jnp.meshgrid(jnp.arange(4), jnp.arange(3), indexing="ij"))))
    assert joint.sum() == pytest.approx(1.0, abs=1e-5) and joint[3].max() == 0.0
    assert float(dist.entropy()) == pytest.approx(h(joint[:3].ravel()), rel=1e-5)  # chain rule
    uniform = ActionDist(jnp.array([0.0, 0.0, -1e9]), jnp.zeros((3, 7)))
    assert float(uniform.entropy()) == pytest.approx(np.log(2) + np.log(7), rel=1e-6)


def test_the_policy_never_picks_the_target_or_padding_and_its_grid_sums_to_one():
    d, key = 6, jax.random.PRNGKey(3)
    policy = Policy(key, dim=16, n_bins=5)
    # random heads: a policy with strong preferences, some of them for masked variables
    policy = eqx.tree_at(lambda p: (p.var_head.weight, p.val_head.weight), policy,
                         (5 * jax.random.normal(key, (1, 16)), jax.random.normal(key, (5, 16))))
    feats = jax.random.normal(jax.random.PRNGKey(4), (d, N_FEATURES))
    cand = jnp.array([True, False, True, True, False, False])  # 1 the target, 4-5 padding
    dist = policy(feats, cand)
    var, bin = dist.sample(jax.random.PRNGKey(5), (4000,))
    assert set(np.unique(np.asarray(var))) <= {0, 2, 3}
    assert ((np.asarray(bin) >= 0) & (np.asarray(bin) < 5)).all()
    grid = jnp.meshgrid(jnp.arange(d), jnp.arange(5), indexing="ij")
    p = np.exp(np.asarray(dist.log_prob(*grid)))
    assert p.sum() == pytest.approx(1.0, abs=1e-5)
    assert p[[1, 4, 5]].max() == 0.0
    # permuting the variables permutes the distribution (no dependence on their order)
    perm = jnp.array([3, 0, 5, 2, 1, 4])
    q = np.exp(np.asarray(policy(feats[perm], cand[perm]).log_prob(*grid)))
    np.testing.assert_allclose(q, p[np.asarray(perm)], rtol=1e-4, atol=1e-7)
    # an untrained policy is uniform over the candidates and the grid
    fresh = np.exp(np.asarray(Policy(key, dim=16, n_bins=5)(feats, cand).log_prob(*grid)))
    np.testing.assert_allclose(fresh[[0, 2, 3]], 1 / 15, rtol=1e-5)


def test_learned_policy_is_an_acquisition():
    from engine.scm.simulator import Simulator

    scm, data = Simulator(SCM, devices=jax.devices()[:1])(jax.random.PRNGKey(0), 1)
    scm, data = jax.tree.map(lambda a: a[0] if eqx.is_array(a) else a, (scm, data))
    problem, buffer = environment.reset(scm, data, 3)
    post = environment.LinearBayesSurrogate(2)(buffer, problem)
    acq = LearnedPolicy(Policy(jax.random.PRNGKey(1), dim=8), greedy=False)
    state = acq.init(jax.random.PRNGKey(2), problem, buffer, post)
    for t in range(3):
        var, value, state = acq.select(state, jax.random.PRNGKey(t), buffer, post)
        assert bool(problem.candidates[var]) and float(problem.low[var]) <= float(value) <= float(problem.high[var])
        state = acq.observe(state, var, value, jnp.float32(-1.0 - t), buffer.obs[0])
    assert int(state.tracker.t) == 3 and np.isfinite(float(state.tracker.y_best))


# --------------------------------------------------------------------------- training
TRAIN = grpo.GRPOConfig(steps=160, graphs_per_step=16, group_size=8, episode_length=6, epochs=2,
                        log_every=20, checkpoint_every=80)


def test_grpo_training_raises_the_reward_and_beats_random_on_held_out_graphs(tmp_path):
    """A short GRPO run (2560 simulated episodes, a few seconds after compiling): the logged
    mean reward of its rollouts rises above its first measurement, and on 256 held-out graphs
    the trained policy's mean reward per trial beats random interventions' (uniform variable,
    uniform value) by a clear margin (measured: 0.28 at the first log point, 0.55 at the last;
    held out 0.52 vs 0.24, paired difference 0.29 +- 0.01)."""
    policy, trainer = grpo.train(TRAIN, SCM, tmp_path, warn=lambda m: None)
    assert trainer.summary["steps"] == TRAIN.steps
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rewards = [r["reward"] for r in log]
    assert len(rewards) == 8 and np.mean(rewards[-2:]) > rewards[0] + 0.1, rewards
    assert log[-1]["entropy"] < log[0]["entropy"]

    from engine.scm.simulator import Simulator

    scms, datas = Simulator(SCM, devices=jax.devices()[:1])(jax.random.PRNGKey(12345), 256)
    key = jax.random.PRNGKey(7)
    learned = environment.mean_reward(environment.evaluate(environment.Choice(policy, greedy=False), scms, datas, key, TRAIN))
    rand = environment.mean_reward(environment.evaluate(environment.Choice(None), scms, datas, key, TRAIN))
    diff = learned - rand  # paired: the same graphs
    assert diff.mean() - 3 * diff.std() / np.sqrt(len(diff)) > 0.05, (learned.mean(), rand.mean())


def test_grpo_training_resumes_bit_for_bit(tmp_path):
    """Cut by the wall budget after step 1, inside a rollout's reuse window (its batch is in
    the checkpointed carry), resumed one step per call: the very parameters of an
    uninterrupted run in whole chunks."""
    cfg = grpo.GRPOConfig(steps=4, graphs_per_step=2, group_size=2, episode_length=2, epochs=2, log_every=2,
                          checkpoint_every=2, dim=8)
    reference, _ = grpo.train(cfg, SCM, tmp_path / "whole", warn=lambda m: None)
    with pytest.raises(TrainingStopped, match="at step 1 of 4"):
        grpo.train(cfg, SCM, tmp_path / "cut", deadline=time.time() - 1, warn=lambda m: None)
    trainer = grpo.make_trainer(cfg)
    trainer.call_seconds = 0.0  # every call one step
    state = trainer.fit(grpo.make_phases(cfg, SCM), None, tmp_path / "cut", warn=lambda m: None)
    assert int(state.step) == 4
    for a, b in zip(params(reference), params(state.model)):
        np.testing.assert_array_equal(a, b)
    start = trainer.init(jax.random.split(jax.random.PRNGKey(cfg.seed))[0]).model
    assert not all(np.array_equal(a, b) for a, b in zip(params(reference), params(start)))  # it did train
