"""What a training step costs: seconds per step from the model's forward FLOPs.

RATE is the effective FLOP/s each architecture reaches per device on a 2-core CPU host, OVERHEAD
the seconds per step that do not scale with the work (dispatch, optimizer, sampling); both are
measured by `benchmarks/plan.py`, which prints these estimates beside measured step times.
"""

from __future__ import annotations

RATE = {"stats": 2.7e10, "avici": 3.0e10}
OVERHEAD = {"stats": 2e-3, "avici": 2e-3}


def step_seconds(spec, n_devices: int = 1) -> float:
    """Estimated seconds of one training step of `spec` (forward + backward, padded sizes)."""
    model = spec.model
    n = spec.scm.n_obs + spec.scm.n_int
    d = max([spec.scm.max_nodes] + [c.scm(spec.scm).max_nodes for c in spec.train.curriculum])
    graph = getattr(spec.loss, "graph_weight", 0.0) > 0
    flops = 3 * spec.train.batch_size * model.forward_flops(n, d, graph)
    return OVERHEAD[model.kind] + flops / (RATE[model.kind] * n_devices)
