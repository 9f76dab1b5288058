"""The general pretrained models against PC and GES on data acbo did not generate.

  .venv/bin/python benchmarks/general.py [--models general general_int ...] [--graphs 20]
      [--suites linear-10 rff-20 grn-10 bnlearn ...] [--limit 600] [--out benchmarks/results/general_eval]

Datasets come from benchmarks/external.py (NumPy samplers apart from engine/scm): linear and RFF
ER-2 and SERGIO-style GRN counts at d = 10 and 20 (20 datasets of 1000 observational rows each;
"+int" adds 20 hard-intervention rows per variable, knock-outs for GRN), and the four bnlearn
Gaussian networks with their published parameters (--network-datasets of 1000 rows each, 3). Each model
answers through the user's path (`engine.load(name).graph(...)`: its own standardisation); PC
and GES (causal-learn) take the observational rows, z-scored, and so does exact_dp (exact
Bayesian edge marginals over all DAGs, up to 20 variables: the answer GES's score gives with no
search error) and exact_additive (the same with scores that also weigh additive nonlinear
mechanisms, up to 8 parents); GRN counts are log2 CPM for all.

Metrics come from the engine's one registry (engine/evaluate/catalog.py) with bootstrap 95%
intervals over datasets, and the paired differences model - GES and model - PC (on the +int
suites also interventional model - observational model). A baseline run
over --limit seconds is stopped and counts as not run (said in the table). Baseline answers are
cached per dataset under --cache, so a rerun with another model costs only the model; a rerun
keeps the results of the models (--models) and baselines (--baselines) it did not name.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import external  # noqa: E402
from engine.evaluate.baselines import BASELINES, BaselineNotRun, predict_graph  # noqa: E402
from engine.evaluate.decision import expected_f1_graph  # noqa: E402
from engine.evaluate.estimate import estimate  # noqa: E402
from engine.evaluate.record import Side, StageResult  # noqa: E402

HEADER = """# General models vs PC, GES and exact Bayesian inference on data acbo did not generate

Written by `benchmarks/general.py` (datasets: `benchmarks/external.py`). Whole-graph metrics from
the engine's registry; 95% bootstrap intervals over datasets. A model's graph (F1, skeleton F1, SHD)
is the graph of highest expected F1 under its edge probabilities (`engine.evaluate.decision`, what
`acbo` evaluations use by default); "MODEL p>0.5" rows score the edges above 0.5 instead. A CPDAG's
undirected edge is half an edge each way; "minus" rows are paired differences on the same datasets.
PC, GES and the exact posteriors read the observational rows only (exact_dp: exact Bayesian edge
marginals over all DAGs with GES's BIC score, up to 20 variables and 5 parents, its graph the
expected-F1 decision; exact_additive: the same under scores averaging the linear and an additive
nonlinear model's BIC evidence, up to 8 parents); "+int" suites add 20 interventional rows per
variable for the models (a model trained on observational rows only, general and general_grn,
leaves them out as `acbo infer` does, so its +int rows equal its observational ones). A baseline run past the time limit counts as not run (after one, a suite's later
datasets are not tried for that baseline). "s / dataset" is the median time of one answer as
measured here, not a speed comparison: the methods ran beside other jobs (training, tests) on 2
cores (benchmarks/inference_cost.py compares speed on an unloaded process).

"""
METRICS = ("graph_auroc", "graph_auprc", "graph_f1", "skeleton_f1", "graph_shd")
SHOWN = {"graph_auroc": "AUROC", "graph_auprc": "AUPRC", "graph_f1": "F1", "skeleton_f1": "skel F1",
         "graph_shd": "SHD"}
SYNTHETIC = [f"{k}-{d}{i}" for i in ("", "+int") for k in ("linear", "rff", "grn") for d in (10, 20)]
SUITES = SYNTHETIC + [f"bnlearn-{n}" for n in external.NETWORKS]


def datasets(suite: str, graphs: int, networks: int) -> list[external.Dataset]:
    if suite.startswith("bnlearn-"):
        name = suite.removeprefix("bnlearn-")
        return [external.bnlearn(name, 1000, seed) for seed in range(networks)]
    base, _, inter = suite.partition("+")
    kind, d = base.split("-")
    rows = 20 if inter else 0
    seeds = range(1000 * int(d), 1000 * int(d) + graphs)  # same graphs with and without rows
    if kind == "grn":
        return [external.grn(int(d), 1000, s, rows) for s in seeds]
    return [external.continuous(kind, int(d), 1000, s, rows) for s in seeds]


def _values(ds: external.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(observational rows, interventional rows) as methods read them."""
    if ds.counts:
        return external.log_cpm(ds.obs), external.log_cpm(ds.rows) if len(ds.rows) else ds.rows
    return ds.obs, ds.rows


def baseline(name: str, ds: external.Dataset, key: str, cache: Path, limit: int):
    """(weights, scores, seconds) of a baseline on the observational rows, cached; NaN when the
    run went over `limit` seconds."""
    path = cache / f"{key}.{name}.npz"
    if path.exists():
        z = np.load(path)
        return z["weights"], z["scores"], float(z["seconds"])
    obs, _ = _values(ds)
    if limit <= 0:
        d = obs.shape[1]
        return np.full((d, d), np.nan), np.full((d, d), np.nan), float("nan")
    try:
        p = predict_graph(name, obs, seed=0, limit=limit)
        out = (p.weights, p.scores, p.seconds)
    except BaselineNotRun:
        d = obs.shape[1]
        out = (np.full((d, d), np.nan), np.full((d, d), np.nan), float("nan"))
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, weights=out[0], scores=out[1], seconds=out[2])
    tmp.replace(path)
    return out


def informative(ds: external.Dataset) -> np.ndarray:
    """[d] the variables with spread over the observational rows: a gene never detected in any
    cell is dropped, as a user must (`acbo infer` refuses it; PC and GES give it no edge)."""
    return _values(ds)[0].std(0) > 0


def model_answer(predictor, ds: external.Dataset):
    """(graph, scores, seconds): edge probabilities from all rows, timed warm, and the graph of
    highest expected F1 under them. A model trained on counts (`predictor.counts`) reads the raw
    UMIs and makes them log2 CPM itself."""
    obs, rows = (ds.obs, ds.rows) if ds.counts and predictor.counts else _values(ds)
    keep = informative(ds)
    x = (np.concatenate([obs, rows]) if len(rows) else obs)[:, keep]
    mask = np.concatenate([np.zeros(obs.shape, bool), ds.mask])[:, keep] if len(rows) else None
    names = [f"x{i}" for i in range(x.shape[1])]
    data = (x, names)
    ivs = None if mask is None else (mask.astype(np.float64), names)
    predictor.graph(data, ivs)  # compile for this shape
    t0 = time.perf_counter()
    probs = np.zeros((len(keep), len(keep)))
    probs[np.ix_(keep, keep)] = predictor.graph(data, ivs).probs
    seconds = time.perf_counter() - t0
    return expected_f1_graph(probs, keep), probs, seconds


def stage(suite: str, sets, answers: dict[str, list]) -> StageResult:
    """A StageResult of whole-graph answers (target 0 stands in: only graph metrics are read)."""
    n, d = len(sets), sets[0].adjacency.shape[0]
    adj = np.stack([s.adjacency for s in sets])
    sides = {}
    for name, ans in answers.items():
        w, s, sec = (np.stack([a[k] for a in ans]) for k in range(3))
        ran = np.isfinite(s).all((1, 2))
        probs = np.where(ran[:, None], s[:, :, 0], np.nan)
        sides[name] = Side(probs=probs, pred=w[:, :, 0], seconds=sec, graph_scores=s, graph_pred=w)
    target = np.zeros(n, np.int64)
    keep = np.stack([informative(s) for s in sets])
    adj = adj & keep[:, :, None] & keep[:, None, :]
    return StageResult(suite, suite, adj[:, :, 0], keep & (np.arange(d)[None] != 0), adj,
                       keep, target, np.full(n, np.nan), sides)


def rivals(side: str, suite: str, st: StageResult, predictors: dict, baselines: list[str]):
    """(rival, metrics) pairs a model's paired differences are taken against: each baseline that
    ran; on a suite with interventional rows, a model that reads them is also set against each
    model that reads the observational rows alone (do the interventions add anything?)."""
    if side not in predictors:
        return []
    out = [(b, ("graph_f1", "skeleton_f1")) for b in baselines if b in st.sides and st.sides[b].ran.any()]
    if "+int" in suite and not predictors[side].observational_only:
        out += [(m, ("graph_auroc", "graph_f1")) for m, p in predictors.items()
                if m in st.sides and p.observational_only]
    return out


def _fmt(e) -> str:
    return "n/a" if not np.isfinite(e.value) else f"{e.value:.3f} [{e.low:.3f}, {e.high:.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=None, help="default: every shipped model")
    ap.add_argument("--suites", nargs="+", default=SUITES, help=f"any of {SUITES}, or 'bnlearn'")
    ap.add_argument("--graphs", type=int, default=20)
    ap.add_argument("--network-datasets", type=int, default=3, help="datasets per bnlearn network")
    ap.add_argument("--baselines", nargs="*", default=["pc", "ges", "exact_dp", "exact_additive"],
                    choices=[b for b in BASELINES if b != "random"])
    ap.add_argument("--limit", type=int, default=600, help="seconds before one baseline run is stopped")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "general_eval")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "general_eval")
    args = ap.parse_args()
    suites = [s for x in args.suites for s in ([f"bnlearn-{n}" for n in external.NETWORKS] if x == "bnlearn" else [x])]
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        sys.exit(f"unknown suite(s) {unknown}; expected {SUITES}")
    args.cache.mkdir(parents=True, exist_ok=True)

    import engine

    from engine import pretrained

    predictors = {m: engine.load(m) for m in (pretrained.names() if args.models is None else args.models)}
    results = json.loads((args.out.with_suffix(".json")).read_text()) if args.out.with_suffix(".json").exists() else {}
    for suite in suites:
        sets = datasets(suite, args.graphs, args.network_datasets)
        answers: dict[str, list] = {}
        for m, p in predictors.items():
            if p.counts and not sets[0].counts:  # a count-data model has nothing to say on these
                continue
            answers[m] = [model_answer(p, ds) for ds in sets]
            answers[f"{m} p>{args.threshold:g}"] = [((s > args.threshold).astype(np.float64), s, sec)
                                                    for _, s, sec in answers[m]]
        base = suite.partition("+")[0]  # the baselines read the same observational rows
        d = sets[0].adjacency.shape[0]
        for b in [b for b in args.baselines if BASELINES[b].takes(d)]:
            answers[b], limit = [], args.limit
            for i, ds in enumerate(sets):
                answers[b].append(baseline(b, ds, f"{base}.{i}", args.cache, limit))
                if not np.isfinite(answers[b][-1][2]):
                    limit = 0  # one run over the limit: the suite's others would be too (not run)
            print(f"{suite}: {b} done", file=sys.stderr, flush=True)
        st = stage(suite, sets, answers)
        row = {}
        for side in answers:
            if not st.sides[side].ran.any():  # every run over the limit: nothing to score
                row[side] = {"ran": 0}
                continue
            side_row = {k: estimate(st, k, side, n_boot=args.boot, seed=0).to_json() for k in METRICS}
            side_row["seconds"] = estimate(st, "seconds", side, n_boot=args.boot, seed=0).to_json()
            side_row["ran"] = int(st.sides[side].ran.sum())
            for b, ks in rivals(side, suite, st, predictors, args.baselines):
                for k in ks:
                    e = estimate(st, k, side, vs=b, relative="difference", n_boot=args.boot, seed=0)
                    side_row[f"{k}_minus_{b}"] = e.to_json()
            row[side] = side_row
        # a rerun with some models and baselines keeps the rows of the others (same datasets)
        kept = {m: r for m, r in results.get(suite, {}).get("methods", {}).items()
                if m.split(" p>")[0] not in predictors and m not in args.baselines}
        results[suite] = {"graphs": len(sets), "d": int(sets[0].adjacency.shape[0]),
                          "edges": float(st.adjacency.sum((1, 2)).mean()),
                          "dropped": int((~st.var_mask).sum()), "methods": {**kept, **row}}
        print(table(suite, results[suite]), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        order = [s for s in SUITES if s in results]
        for suffix, text in ((".json", json.dumps(results, indent=1)),
                             (".md", HEADER + "\n".join(table(s, results[s]) for s in order))):
            tmp = args.out.with_suffix(suffix + ".tmp")
            tmp.write_text(text)
            tmp.replace(args.out.with_suffix(suffix))


def table(suite: str, r: dict) -> str:
    """One suite's results as markdown."""
    from engine.evaluate.record import Estimate

    dropped = f"; {r['dropped']} never-detected variables dropped" if r.get("dropped") else ""
    out = [f"### {suite}: {r['graphs']} datasets, d = {r['d']}, {r['edges']:.1f} edges on average{dropped}", "",
           "| method | " + " | ".join(SHOWN[k] for k in METRICS) + " | s / dataset | ran |",
           "|---" * (len(METRICS) + 3) + "|"]
    for side, row in r["methods"].items():
        if not row["ran"]:
            out.append(f"| {side} | " + " | ".join("not run" for _ in METRICS) + f" | over the limit | 0/{r['graphs']} |")
            continue
        cells = [_fmt(Estimate.from_json(row[k])) for k in METRICS]
        sec = Estimate.from_json(row["seconds"]).value
        out.append(f"| {side} | " + " | ".join(cells) + f" | {sec:.3g} | {row['ran']}/{r['graphs']} |")
    out.append("")
    for side, row in r["methods"].items():
        for k, v in row.items():
            if "_minus_" in k:
                out.append(f"- {side}: {k.replace('_minus_', ' minus ')} = {_fmt(Estimate.from_json(v))}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
