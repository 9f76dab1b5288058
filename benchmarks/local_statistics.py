"""How far local conditional-independence statistics take the skeleton on dense linear and RFF data.

  .venv/bin/python benchmarks/local_statistics.py [--family linear rff] [--train 60]
      [--out benchmarks/results/local_statistics.md]

The stats model reads pairwise statistics (correlation, partial correlation given all others)
and, with `triplets = true`, triple ones (given all but one variable, given one variable). On
linear ER-2 data at d = 10 (benchmarks/external.py, 1000 rows) the amortized model's skeleton
trails exact Bayesian inference by far. This script asks whether the statistics themselves hold
the answer: per unordered pair, a gradient-boosted classifier (scikit-learn, the `baselines`
extra) is fitted on --train graphs of the same generator, the most favourable case any learner
of these features could have (in distribution, one family, one size), and scored on the 20
evaluation datasets of benchmarks/general.py. Feature sets: pair; pair + triple; pair + triple
+ order-2 (partial correlations given every pair of other variables, and given all but every
pair: O(d^4), which the model does not compute); pair + triple + additive (engine/models/
additive.py's two statistics each way: what a variable's regression on the others' sin/cos
bases loses without the other one, and what that one alone explains). Beside them: exact_dp's and exact_additive's skeleton AUROC on the same datasets
(edge marginals p(i->j) + p(j->i), from the general_eval cache when present). AUROC is per
dataset, averaged, with a 95% bootstrap interval over datasets.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import external  # noqa: E402

D = 10
EVAL_SEEDS = range(1000 * D, 1000 * D + 20)  # benchmarks/general.py's linear-10 datasets


def _pcor(C, i, j, given) -> float:
    idx = [i, j, *given]
    Q = np.linalg.inv(C[np.ix_(idx, idx)])
    return -Q[0, 1] / np.sqrt(Q[0, 0] * Q[1, 1])


def pair_rows(x: np.ndarray):
    """Per unordered pair (i, j): (pair, triple, order-2) feature lists."""
    C = np.corrcoef(x.T)
    d = C.shape[0]
    out = []
    for i, j in itertools.combinations(range(d), 2):
        rest = [k for k in range(d) if k not in (i, j)]
        pair = [abs(C[i, j]), abs(_pcor(C, i, j, rest))]
        drop = np.array([abs(_pcor(C, i, j, [u for u in rest if u != k])) for k in rest])
        one = np.array([abs(_pcor(C, i, j, [k])) for k in rest])
        triple = [drop.min(), drop.mean(), one.min(), one.mean()]
        pairs = list(itertools.combinations(rest, 2))
        two = np.array([abs(_pcor(C, i, j, s)) for s in pairs])
        drop2 = np.array([abs(_pcor(C, i, j, [u for u in rest if u not in s])) for s in pairs])
        out.append(((i, j), pair, pair + triple, pair + triple + [two.min(), two.mean(), drop2.min(), drop2.mean()]))
    return out


def additive_rows(x: np.ndarray) -> dict:
    """Per unordered pair: engine/models/additive.py's drop and marginal statistics in both
    directions (max and min of each over the two)."""
    from engine.models.additive import additive_features

    n, d = x.shape
    cells = np.stack([x, np.zeros_like(x)], -1).astype(np.float32)
    f = np.asarray(additive_features(cells, np.ones(n, bool), np.ones(d, bool)))
    return {(i, j): [max(f[i, j, 0], f[j, i, 0]), min(f[i, j, 0], f[j, i, 0]),
                     max(f[i, j, 1], f[j, i, 1]), min(f[i, j, 1], f[j, i, 1])]
            for i, j in itertools.combinations(range(d), 2)}


def table(seeds, family: str):
    keys, sets, y, group = [], [[], [], [], []], [], []
    for g, s in enumerate(seeds):
        ds = external.continuous(family, D, 1000, s, 0)
        skel = ds.adjacency | ds.adjacency.T
        extra = additive_rows(ds.obs)
        for (i, j), *feats in pair_rows(ds.obs):
            feats.append(feats[1] + extra[(i, j)])
            for f, lst in zip(feats, sets):
                lst.append(f)
            y.append(skel[i, j])
            keys.append((i, j))
            group.append(g)
    return [np.array(f) for f in sets], np.array(y), np.array(group), keys


def _interval(per_set: np.ndarray, boot: int = 1000) -> tuple[float, float, float]:
    rng = np.random.default_rng(0)
    means = [per_set[rng.integers(0, len(per_set), len(per_set))].mean() for _ in range(boot)]
    return float(per_set.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def main() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    ap = argparse.ArgumentParser()
    ap.add_argument("--family", nargs="+", default=["linear", "rff"], choices=["linear", "rff"])
    ap.add_argument("--train", type=int, default=60, help="training graphs (seeds 500...)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "general_eval")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "local_statistics.md")
    args = ap.parse_args()
    lines = ["# What local statistics can tell about the skeleton: ER-2, d = 10, 1000 rows", "",
             "Written by `benchmarks/local_statistics.py`: a gradient-boosted classifier per unordered pair,",
             f"trained on {args.train} graphs of the evaluation's own generator (the most favourable case for",
             "a learner of these features), scored on benchmarks/general.py's 20 datasets of that family;",
             "skeleton AUROC per dataset, mean and 95% bootstrap interval."]
    for family in args.family:
        train_x, train_y, _, _ = table(range(500, 500 + args.train), family)
        test_x, test_y, group, keys = table(EVAL_SEEDS, family)

        def per_dataset(scores):
            return np.array([roc_auc_score(test_y[group == g], scores[group == g]) for g in range(len(EVAL_SEEDS))])

        rows = []
        for name, k in (("pair statistics", 0), ("pair + triple", 1), ("pair + triple + order-2", 2),
                        ("pair + triple + additive", 3)):
            clf = HistGradientBoostingClassifier(max_iter=300, random_state=0).fit(train_x[k], train_y)
            rows.append((name, _interval(per_dataset(clf.predict_proba(test_x[k])[:, 1]))))
        for baseline in ("exact_dp", "exact_additive"):
            exact = []
            for g in range(len(EVAL_SEEDS)):
                path = args.cache / f"{family}-{D}.{g}.{baseline}.npz"
                if not path.exists():
                    break
                s = np.load(path)["scores"]
                exact.append(np.array([s[i, j] + s[j, i] for (i, j), gg in zip(keys, group) if gg == g]))
            if len(exact) == len(EVAL_SEEDS):
                rows.append((f"{baseline} (exact Bayesian marginals)", _interval(per_dataset(np.concatenate(exact)))))
        lines += ["", f"## {family}-{D}", "", "| features | skeleton AUROC | 95% interval |", "|---|---|---|"]
        lines += [f"| {n} | {v:.3f} | [{lo:.3f}, {hi:.3f}] |" for n, (v, lo, hi) in rows]
        print("\n".join(lines[-len(rows) - 2:]), flush=True)
    text = "\n".join(lines) + "\n"
    tmp = args.out.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
