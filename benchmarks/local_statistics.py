"""How far local conditional-independence statistics take the skeleton on dense linear data.

  .venv/bin/python benchmarks/local_statistics.py [--train 60] [--out benchmarks/results/local_statistics.md]

The stats model reads pairwise statistics (correlation, partial correlation given all others)
and, with `triplets = true`, triple ones (given all but one variable, given one variable). On
linear ER-2 data at d = 10 (benchmarks/external.py, 1000 rows) the amortized model's skeleton
trails exact Bayesian inference by far. This script asks whether the statistics themselves hold
the answer: per unordered pair, a gradient-boosted classifier (scikit-learn, the `baselines`
extra) is fitted on --train graphs of the same generator, the most favourable case any learner
of these features could have (in distribution, one family, one size), and scored on the 20
evaluation datasets of benchmarks/general.py. Feature sets: pair; pair + triple; pair + triple
+ order-2 (partial correlations given every pair of other variables, and given all but every
pair: O(d^4), which the model does not compute). Beside them: exact_dp's skeleton AUROC on the
same datasets (its edge marginals p(i->j) + p(j->i), from the general_eval cache when present).
AUROC is per dataset, averaged, with a 95% bootstrap interval over datasets.
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


def table(seeds):
    keys, sets, y, group = [], [[], [], []], [], []
    for g, s in enumerate(seeds):
        ds = external.continuous("linear", D, 1000, s, 0)
        skel = ds.adjacency | ds.adjacency.T
        for (i, j), *feats in pair_rows(ds.obs):
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
    ap.add_argument("--train", type=int, default=60, help="training graphs (seeds 500...)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "general_eval")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "local_statistics.md")
    args = ap.parse_args()
    train_x, train_y, _, _ = table(range(500, 500 + args.train))
    test_x, test_y, group, keys = table(EVAL_SEEDS)

    def per_dataset(scores):
        return np.array([roc_auc_score(test_y[group == g], scores[group == g]) for g in range(len(EVAL_SEEDS))])

    rows = []
    for name, k in (("pair statistics", 0), ("pair + triple", 1), ("pair + triple + order-2", 2)):
        clf = HistGradientBoostingClassifier(max_iter=300, random_state=0).fit(train_x[k], train_y)
        rows.append((name, _interval(per_dataset(clf.predict_proba(test_x[k])[:, 1]))))
    exact = []
    for g in range(len(EVAL_SEEDS)):
        path = args.cache / f"linear-{D}.{g}.exact_dp.npz"
        if not path.exists():
            break
        s = np.load(path)["scores"]
        exact.append(np.array([s[i, j] + s[j, i] for (i, j), gg in zip(keys, group) if gg == g]))
    if len(exact) == len(EVAL_SEEDS):
        rows.append(("exact_dp (exact Bayesian marginals)", _interval(per_dataset(np.concatenate(exact)))))
    lines = ["# What local statistics can tell about the skeleton: linear ER-2, d = 10, 1000 rows", "",
             "Written by `benchmarks/local_statistics.py`: a gradient-boosted classifier per unordered pair,",
             f"trained on {args.train} graphs of the evaluation's own generator (the most favourable case for",
             "a learner of these features), scored on benchmarks/general.py's 20 linear-10 datasets;",
             "skeleton AUROC per dataset, mean and 95% bootstrap interval.", "",
             "| features | skeleton AUROC | 95% interval |", "|---|---|---|"]
    lines += [f"| {n} | {v:.3f} | [{lo:.3f}, {hi:.3f}] |" for n, (v, lo, hi) in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    tmp = args.out.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
