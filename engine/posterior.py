"""Exact Bayesian edge probabilities for a user's data: the answer to prefer on small graphs.

On up to 20 variables the posterior over every DAG can be summed exactly (Koivisto & Sood's
dynamic programme, engine.evaluate.bayes_dp) in well under a second at 10 variables and about
20 s at 20. With local scores that average a linear and an additive nonlinear model's evidence it
ranks edges far better than the amortized models on external data (benchmarks/results/
general_eval.md: rff-10 AUROC 0.97 against general's 0.79), so `acbo infer --exact` offers it
beside them, for continuous data: on single-cell counts (log2 CPM, dropout) its scores rank
edges below chance (grn-10 AUROC 0.32), so it refuses them (`--exact --counts`). It reads
observational rows only: a posterior over i.i.d. rows has no term for a
hard intervention, so interventional rows are left out (and counted in the metadata).
"""

from __future__ import annotations

import numpy as np

from engine.evaluate import bayes_dp
from engine.infer import Graph
from engine.userfiles import InferError, inputs, standardise, target_index

METHOD = "exact_additive"  # the baseline registry's name for this posterior


class ExactPosterior:
    """`graph(data)` and `parents(data, target=...)` as a model's Predictor gives them, from the
    exact posterior over all DAGs (bayes_dp.additive_scores, up to 8 parents at 20 variables)."""

    max_variables = bayes_dp.MAX_VARIABLES
    row_chunk = None  # the Predictor interface: no rows are chunked here
    observational_only = True  # the Predictor interface: interventional rows are left out

    def __init__(self):
        self.counts = False  # the Predictor interface; counts are refused (module docstring)
        self.max_memory_gb: float | None = None  # the Predictor interface; ~1 GB at 20 variables
        self.metadata: dict = {"model": METHOD}

    def describe(self) -> str:
        return ("exact Bayesian posterior over all DAGs (linear or additive local scores, "
                "order-modular prior), on the observational rows")

    def graph(self, data, interventions=None) -> Graph:
        """P(names[i] -> names[j]) for every pair, summed over all DAGs of these variables."""
        from engine.evaluate.baselines import predict_graph

        if self.counts:
            raise InferError("the exact posterior is for continuous data: on single-cell counts its "
                             "scores rank edges below chance; use the general_grn model")
        table, mask = inputs(data, interventions)
        d = len(table.names)
        if d > self.max_variables:
            raise InferError(f"the exact posterior takes at most {self.max_variables} variables "
                             f"(its cost doubles with each one); these data have {d}: use a model")
        obs = ~mask.any(1)
        z = standardise(table.values, mask)[obs]
        probs = np.array(predict_graph(METHOD, z, seed=0).scores)
        np.fill_diagonal(probs, 0.0)
        meta = {**self.metadata, "rows": int(obs.sum()), "interventional_rows_left_out": int((~obs).sum())}
        if table.source:
            meta["data"] = table.source
        return Graph(table.names, probs, meta)

    __call__ = graph

    def parents(self, data, interventions=None, target: str | int = 0) -> dict[str, float]:
        """P(v is a parent of `target`) for every other variable v, in column order."""
        table, _ = inputs(data, interventions)
        t = target_index(table, target)
        g = self.graph(data, interventions)
        return {n: float(p) for i, (n, p) in enumerate(zip(g.names, g.probs[:, t])) if i != t}
