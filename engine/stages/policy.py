"""Stage policy: train the learned acquisition policy of [policy] with GRPO (resumable).

The trainer is the model's (engine.train.trainer, with engine.cbo.grpo's objective and rollout
source): checkpoints in the stage's work directory, so a killed stage resumes bit for bit; the
[hardware] wall budget stops it with a checkpoint like any training.
"""

from __future__ import annotations

import io
import time

import equinox as eqx
import jax

from engine.stages.context import StageContext


def _surrogate(ctx: StageContext, cfg):
    from engine.cbo import environment

    kind = ctx.spec.policy.surrogate
    if kind == "oracle":
        return environment.OracleSurrogate()
    if kind == "model":
        from engine.stages.optimize import _model_bytes
        from engine.train.host import load_model

        model = load_model(*_model_bytes(ctx, None))
        return environment.AmortizedEnvSurrogate(model, cfg.max_parents)
    return environment.LinearBayesSurrogate(cfg.max_parents)


def load_policy(data: bytes, policy_spec):
    """The trained policy serialised in `data` (checksum-verified by the caller)."""
    from engine.cbo.policy import Policy

    p = policy_spec
    like = Policy(jax.random.PRNGKey(0), p.dim, p.layers, p.heads, p.value_bins)
    return eqx.tree_deserialise_leaves(io.BytesIO(data), like)


def run(ctx: StageContext) -> dict:
    from engine.cbo import grpo
    from engine.train.host import save_model

    spec = ctx.spec
    pol = spec.policy
    cfg = pol.config(spec.seed, spec.optimize.n_trials)
    out = ctx.dir("policy")
    work = out.work_dir()
    ctx.progress.start(f"policy: GRPO, {cfg.steps} steps of {cfg.graphs_per_step} graphs x "
                       f"{cfg.episode_length} states x {cfg.group_size} candidates", cfg.steps)
    started = time.perf_counter()
    trainer = grpo.make_trainer(cfg)
    phases = grpo.make_phases(cfg, pol.scm or spec.scm, _surrogate(ctx, cfg))
    state = trainer.fit(phases, None, work, deadline=ctx.deadline,
                        on_chunk=lambda step, loss: ctx.progress.advance(step, f"loss {loss:.4f}"),
                        warn=ctx.progress.log)
    save_model(work / "policy.eqx", state.model)
    meta = {**trainer.summary, "seconds": time.perf_counter() - started, "surrogate": pol.surrogate}
    out.commit(["policy.eqx", "metrics.jsonl"], meta)
    return meta
