"""Stage 1, simulate: draw the spec's SCMs and their observational and interventional data."""

from __future__ import annotations

import numpy as np

from engine.registry import arrays_to_bytes, write_atomic
from engine.stages.context import StageContext


def run(ctx: StageContext) -> dict:
    from engine import scm as scm_lib

    spec = ctx.spec
    out = ctx.dir("simulate")
    work = out.work_dir()
    ctx.progress.start(f"simulate {spec.data.n_graphs} SCMs", None)
    scms, data = scm_lib.simulate(spec.scm, ctx.key("simulate"), spec.data.n_graphs)
    scm_lib.save(work / "scm.eqx", scms, data)
    adjacency = np.asarray(scms.adjacency)
    target = np.asarray(scms.target)
    parents = adjacency[np.arange(len(target)), :, target].astype(bool)
    summary = {
        "adjacency": adjacency,
        "var_mask": np.asarray(scms.var_mask),
        "target": target,
        "parents": parents,
        "obs": np.asarray(data.obs),
    }
    write_atomic(work / "graphs.npz", arrays_to_bytes(summary))
    n_vars = summary["var_mask"].sum(1)
    meta = {
        "n_graphs": int(len(target)),
        "mean_nodes": float(n_vars.mean()),
        "mean_edges": float(adjacency.sum((1, 2)).mean()),
        "mean_parents": float(parents.sum(1).mean()),
    }
    out.commit(["scm.eqx", "graphs.npz"], meta)
    ctx.progress.advance(1, f"{meta['n_graphs']} graphs, {meta['mean_edges']:.1f} edges on average")
    return meta


def load(ctx: StageContext):
    """(scms, data) batched over graphs, read back with checksums verified."""
    from engine import scm as scm_lib

    path = ctx.dir("simulate").path("scm.eqx")
    return scm_lib.load(path, ctx.spec.scm, ctx.spec.data.n_graphs)
