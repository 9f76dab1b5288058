"""What a training step costs: seconds per step from the model's forward FLOPs, plus, in online
mode, the simulation of its batch.

RATE is the effective FLOP/s each architecture reaches per device on a 2-core CPU host; GRAPH_RATE
the stats model's with the whole-graph head, whose per-target work is batched over every target
into larger matmuls that run about twice as fast; OVERHEAD the seconds per step that do not scale
with the work (dispatch, optimizer, sampling); SIMULATE the seconds per row x variable^2 of
simulating a batch inside the step. All are measured by `benchmarks/plan.py`, which prints these
estimates beside measured step times.
"""

from __future__ import annotations

import math

RATE = {"stats": 2.7e10, "avici": 3.0e10}
GRAPH_RATE = {"stats": 6.0e10}
OVERHEAD = {"stats": 2e-3, "avici": 2e-3}
SIMULATE = 5.5e-9  # general.toml 5.6e-9, general_int.toml 5.1e-9, phase2a_online.toml 4e-9
# grn integrates an SDE per cell: seconds per row x variable^2 x Euler step, by Brownian motion
# (general_grn.toml: 3.7e-10 with "path"; diffrax's VirtualBrownianTree about 11x that)
GRN_STEP = {"path": 3.8e-10, "virtual_tree": 4.0e-9}


def simulate_seconds(scm, batch_size: int) -> float:
    """Estimated seconds to simulate one online batch of `batch_size` graphs of `scm` (every
    declared mechanism, as the vmapped simulator evaluates them all)."""
    per = SIMULATE + sum(GRN_STEP[m.brownian] * math.ceil(m.t_end / m.dt)
                         for m in scm.mechanism if m.kind == "grn")
    return per * batch_size * (scm.n_obs + scm.n_int) * scm.max_nodes**2


def step_seconds(spec, n_devices: int = 1, scm=None) -> float:
    """Estimated seconds of one training step of `spec` (forward + backward, padded sizes; the
    batch's simulation in online mode). `scm`: the SCM distribution of the step's curriculum
    stage, online (each stage simulates, so pads, its own sizes); default the largest."""
    model = spec.model
    n = spec.scm.n_obs + spec.scm.n_int
    scms = [scm] if scm is not None else [spec.scm] + [c.scm(spec.scm) for c in spec.train.curriculum]
    d = max(s.max_nodes for s in scms)
    graph = getattr(spec.loss, "graph_weight", 0.0) > 0
    flops = 3 * spec.train.batch_size * model.forward_flops(n, d, graph)
    rate = GRAPH_RATE.get(model.kind, RATE[model.kind]) if graph else RATE[model.kind]
    seconds = OVERHEAD[model.kind] + flops / (rate * n_devices)
    if spec.data.mode == "online":
        seconds += max(simulate_seconds(s, spec.train.batch_size) for s in scms) / n_devices
    return seconds


def train_seconds(spec, n_devices: int = 1) -> float:
    """Estimated seconds of every training step of `spec` (compile apart): online, each
    curriculum stage at its own sizes; fixed demonstrations are padded to [scm]'s."""
    tspec = spec.train
    if spec.data.mode != "online" or not tspec.curriculum:
        return tspec.steps * step_seconds(spec, n_devices)
    return sum(stage.steps * step_seconds(spec, n_devices, stage.scm(spec.scm)) for stage in tspec.curriculum)
