"""Reports over hand-made run folders: the verdict and why, gates, a table per evaluation stage
with intervals and notes, figures that exist, the console summary, partial and old runs."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from engine.evaluate.estimate import summarise
from engine.evaluate.baselines import BASELINES
from engine.evaluate.record import Evaluation, Side, StageResult
from engine.registry import arrays_to_bytes
from engine.report import (
    evaluation_table,
    list_runs,
    load_run,
    print_run,
    runs_table,
    verdict_line,
    write_index,
    write_report,
)
from engine.report.stages import stage_grid, transfer_grid
from engine.report.tables import estimate_text

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N_BOOT = 200
SKIPPED = 'causal-learn is not installed; install it with: pip install -e ".[baselines]"'


def _stage(name, rng, sizes, n=30, d=8, timed=12):
    nv = rng.integers(sizes[0], sizes[1] + 1, n)
    vm = np.arange(d)[None] < nv[:, None]
    adj = (rng.random((n, d, d)) < 0.4) & np.triu(np.ones((d, d), bool), 1) & vm[:, :, None] & vm[:, None, :]
    target = nv - 1  # the last variable: a sink, with parents to find
    truth = adj[np.arange(n), :, target]
    mask = vm & (np.arange(d)[None] != target[:, None])

    def side(signal, seconds, **kw):
        probs = np.clip(signal * truth + (1 - signal) * rng.random((n, d)), 0, 1) * mask
        secs = np.full(n, np.nan)
        secs[:timed] = rng.uniform(*seconds, timed)
        return Side(probs=probs, pred=(probs > 0.5).astype(float), seconds=secs, **kw)

    model, expert = side(0.3, (1e-3, 2e-3)), side(0.45, (2e-3, 5e-3))
    expert = Side(**{**expert.__dict__, "map_pred": expert.pred})
    pc_w = adj.astype(float)
    half = (rng.random((n, d, d)) < 0.5) & adj  # undirected CPDAG edges: half each way
    pc_w[half] = 0.5
    pc_w = np.maximum(pc_w, np.transpose(pc_w, (0, 2, 1)) * half.transpose(0, 2, 1))
    col = lambda a: a[np.arange(n), :, target]  # noqa: E731
    pc = Side(probs=col(pc_w), pred=col(pc_w), seconds=rng.uniform(0.01, 0.05, n),
              graph_scores=pc_w, graph_pred=pc_w, note=BASELINES["pc"].note)
    rs = rng.random((n, d, d)) * vm[:, :, None] * vm[:, None, :]
    rand = Side(probs=col(rs), pred=col((rs > 0.7).astype(float)), seconds=np.full(n, 1e-5),
                graph_scores=rs, graph_pred=(rs > 0.7).astype(float), note=BASELINES["random"].note)
    info = {"graphs": "simulated for this stage", "observational": False,
            "nodes": [int(nv.min()), int(nv.max())], "mean_edges": float(adj.sum((1, 2)).mean()),
            "interventional_rows": 6.0, "expert": {"kind": "parent_scale", "prior": "doubly_robust",
                                                   "n_trials": 10},
            "baselines": ["pc", "ges", "random"], "n_graphs": n, "timed_graphs": timed, "repeats": 3,
            "skipped": {"ges": SKIPPED}}
    st = StageResult(name, f"{name} graphs", truth, mask, adj, vm, target.astype(np.int64),
                     rng.uniform(1.0, 5.0, n), {"model": model, "expert": expert, "pc": pc,
                                                "random": rand}, info=info)
    return StageResult(**{**st.__dict__, "summary": summarise(st, N_BOOT, 0)})


def make_evaluation(seed=0) -> Evaluation:
    """Two stages (sizes 3-7, then 8 only) with model, expert, PC and random."""
    rng = np.random.default_rng(seed)
    stages = {"held_out": _stage("held_out", rng, (3, 7)), "larger": _stage("larger", rng, (8, 8))}
    return Evaluation(stages, threshold=0.5, n_boot=N_BOOT, seed=0, compile_seconds={"held_out/model": 1.5})


def _gate(name, metric, value, low, high, op, threshold, verdict, **kw):
    g = {"name": name, "group": "week2", "metric": metric, "stage": "held_out", "side": "model",
         "aggregate": "pooled", "vs": None, "relative": None, "value": value, "low": low,
         "high": high, "n": 30, "op": op, "threshold": threshold, "nogo": None,
         "verdict": verdict, "evidence": f"{metric} of model over 30 graphs of held_out"}
    return {**g, **kw}


GATES = {"verdict": "NO-GO", "groups": {"week2": {"policy": "all", "verdict": "NO-GO"}}, "gates": [
    _gate("speedup", "speedup", 1.36, 1.2, 1.5, ">=", 2.0, "NO-GO", aggregate="median", nogo=1.5, n=12),
    _gate("f1 vs expert", "f1", 0.05, -0.02, 0.12, "<=", 0.2, "GO", vs="expert", relative="drop"),
    _gate("auroc", "auroc", 0.8, 0.75, 0.85, ">=", 0.7, "GO"),
]}
VERDICT = "NO-GO: 1 of 3 gates not GO; median speedup 1.36x [1.2, 1.5] < 2x"


def _lock(spec, run_id, started, finished, status="complete"):
    return {"run_id": run_id, "spec_name": spec, "spec_path": f"specs/{spec}.toml",
            "spec_hash": "a1b2c3d4e5f6a7b8c9d0", "stage_hashes": {"simulate": "111aaa"},
            "git_sha": "0123456789abcdef0123", "git_dirty": True, "versions": {"jax": "0.10.0"},
            "devices": ["cpu:0"], "seed": 7, "started": started, "finished": finished,
            "overrides": [], "status": status}


def _seal(run_dir: Path):
    """Record every file's checksum in the run's manifest, as engine.runs.Run does."""
    from engine.registry import sha256_file, write_manifest

    files = {p.name: sha256_file(p) for p in run_dir.iterdir() if p.is_file() and p.name != "manifest.json"}
    write_manifest(run_dir / "manifest.json", {"files": files})


def _write(path: Path, obj):
    path.write_text(json.dumps(obj))
    _seal(path.parent)


def write_run(folder: Path, evaluation: Evaluation | None = None, gates: dict | None = None,
              metrics: list | None = None, spec: dict | None = None, lock: dict | None = None,
              train_meta: dict | None = None, spec_toml: str | None = None):
    """A run folder as engine.runs.Run writes it; `lock` updates the lock, `train_meta` writes
    the train stage's record (manifest meta) for the lock's train hash into the registry."""
    from engine.registry import write_manifest

    folder.mkdir(parents=True)
    full_lock = {**_lock(folder.parent.name, folder.name, "2025-01-01T12:00:00+00:00",
                         "2025-01-01T13:05:30+00:00"), **(lock or {})}
    (folder / "lock.json").write_text(json.dumps(full_lock))
    (folder / "resolved.json").write_text(json.dumps(spec if spec is not None else {
        "description": "A hand-made run.", "stage": {"uses": "phase2a"}}))
    if spec_toml is not None:
        (folder / "spec.toml").write_text(spec_toml)
    if train_meta is not None:
        h = full_lock["stage_hashes"]["train"]
        stage = folder.parents[1] / "_stages" / "train" / h
        stage.mkdir(parents=True, exist_ok=True)
        write_manifest(stage / "manifest.json", {"stage": "train", "hash": h, "files": {}, "meta": train_meta})
    if evaluation is not None:
        (folder / "evaluation.json").write_text(json.dumps(evaluation.to_json()))
        (folder / "evaluation.npz").write_bytes(arrays_to_bytes(evaluation.to_arrays()))
    if gates is not None:
        (folder / "gates.json").write_text(json.dumps(gates))
    if metrics:
        (folder / "metrics.jsonl").write_text("\n".join(map(json.dumps, metrics)) + "\n")
    _seal(folder)
    return folder


METRICS_LOG = [{"step": s, "loss": 1.0, "loss_mean": float(2 * np.exp(-s / 300) + 0.05),
                "time_s": 2.0, "examples_per_s": 900.0 if s == 20 else 1200.0, "lr": 1e-3,
                **({"val_loss": 0.33 + (0.2 if s > 500 else 0)} if s % 200 == 0 else {})}
               for s in range(20, 1000, 20)]


@pytest.fixture(scope="module")
def evaluation():
    return make_evaluation()


@pytest.fixture
def run(tmp_path, evaluation):
    return write_run(tmp_path / "registry" / "phase2b" / "20250101-120000-abcd", evaluation,
                     GATES, METRICS_LOG)


def _text(renderable, width=250) -> str:
    console = Console(record=True, width=width)
    console.print(renderable)
    return console.export_text()


def test_verdict_line_says_why():
    assert verdict_line(GATES) == VERDICT
    go = {"verdict": "GO", "groups": {}, "gates": GATES["gates"][1:]}
    assert verdict_line(go) == "GO: all 2 gates GO"
    drop = _gate("drop", "f1", 0.25, 0.18, 0.31, "<=", 0.2, "NO-GO", vs="expert", relative="drop")
    open_ = _gate("auroc", "auroc", 0.72, 0.68, 0.77, ">=", 0.7, "INCONCLUSIVE", stage="larger")
    line = verdict_line({"verdict": "NO-GO", "gates": [open_, drop]})
    assert line == ("NO-GO: 2 of 2 gates not GO; pooled f1 vs expert on held_out 25% worse [18, 31] "
                    "(needs at most 20% worse); pooled auroc on larger 0.720 [0.680, 0.770] not "
                    "clearly >= 0.7")
    # a drop is worded: no negative drop is needed to say "better"
    better = _gate("b", "f1", -0.05, -0.08, 0.01, "<=", 0.1, "INCONCLUSIVE", vs="expert", relative="drop",
                   nogo=0.2)
    assert ("pooled f1 vs expert 5% better [8% better, 1% worse] (needs at most 10% worse, not "
            "clearly met)") in verdict_line({"verdict": "INCONCLUSIVE", "gates": [better]})
    none = _gate("t", "seconds", None, None, None, "<=", 0.01, "NO-GO", aggregate="median")
    assert "median seconds undefined (<= 10 ms)" in verdict_line({"verdict": "NO-GO", "gates": [none]})
    assert verdict_line(None).startswith("No gate verdict")


def test_stage_table_has_every_method_with_intervals_and_notes(evaluation):
    st = evaluation.stage("held_out")
    grid = stage_grid(st, N_BOOT)
    assert grid.headers[:6] == ["Method", "F1", "Precision", "Recall", "AUROC", "AUPRC"]
    assert {"SHD (mean)", "Graph F1", "Graph SHD (mean)", "Time (median)", "Speedup (median)",
            "Full speedup (median)"} <= set(grid.headers)
    assert [r[0][0] for r in grid.rows] == ["model", "expert", "PC¹", "random²"]
    col = {h: i for i, h in enumerate(grid.headers)}
    for row, side in zip(grid.rows, ["model", "expert", "pc", "random"]):
        e = st.summary[side]["f1"]
        assert row[col["F1"]][0] == estimate_text(e) and re.fullmatch(r"\S+ \[\S+, \S+\]", row[col["F1"]][0])
        assert e.low <= e.value <= e.high
    model = grid.rows[0]
    assert model[col["Time (median)"]][0].split()[1] == "ms"
    assert re.fullmatch(r"[\d.]+x \[[\d.]+, [\d.]+\]", model[col["Speedup (median)"]][0])
    assert grid.rows[1][col["Speedup (median)"]][0] == "—"  # the expert has no speedup over itself
    assert model[col["Graph F1"]][0] == "—"  # no graph head
    best_f1 = max(["model", "expert", "pc", "random"], key=lambda s: st.summary[s]["f1"].value)
    assert [r[col["F1"]][1] for r in grid.rows][["model", "expert", "pc", "random"].index(best_f1)] == "good"
    assert grid.notes[0].startswith("¹ PC (causal-learn") and "counts as half" in grid.notes[0]
    assert grid.notes[1].startswith("² random: independent edges")
    assert grid.notes[2] == f"GES not run: {SKIPPED}"
    assert "30 graphs, times over 12 timed graphs" in grid.caption
    transfer = transfer_grid(evaluation)
    assert [r[0][0] for r in transfer.rows] == ["held_out", "larger"]
    assert transfer.headers == ["Stage", "Graphs", "model F1", "expert F1", "PC F1", "random F1",
                                "model AUROC"]
    assert transfer.rows[1][2][0] == estimate_text(evaluation.stage("larger").summary["model"]["f1"])


def test_report_documents(run, tmp_path, evaluation):
    assert load_run(run).evaluation.to_json() == evaluation.to_json()  # RunFolder.evaluation()
    reports = tmp_path / "reports"
    md, page = write_report(run, reports)
    assert md == reports / "phase2b-20250101-120000-abcd.md" and page.is_file()
    md_text, html_text = md.read_text(), html.unescape(page.read_text())
    # the verdict and why, then the gates table right under it
    assert md_text.splitlines()[1:4] == ["# phase2b / 20250101-120000-abcd", "", f"**{VERDICT}**"]
    order = [md_text.index(s) for s in (VERDICT, "### Gates: NO-GO", "| Gate | Verdict |",
                                        "## What was evaluated", "### Across stages",
                                        "### Stage held_out: held_out graphs",
                                        "### Stage larger: larger graphs", "## Training",
                                        "## Provenance")]
    assert order == sorted(order)
    assert "| speedup | **NO-GO** | 1.36x [1.2, 1.5] | 12 | >= 2x (NO-GO < 1.5x) |" in md_text
    assert "| f1 vs expert | **GO** | 5% worse [2% better, 12% worse] | 30 | at most 20% worse |" in md_text
    assert "spec `phase2a` (`uses`)" in md_text and "A hand-made run." in md_text
    assert "3–7 nodes" in md_text and "expert parent_scale, prior doubly_robust, 10 trials" in md_text
    assert "12 graphs timed (median of 3 runs each)" in md_text
    f1 = estimate_text(evaluation.stage("larger").summary["expert"]["f1"])
    assert f1 in md_text and f1 in html_text
    assert "counts as half an edge" in md_text and "GES not run" in md_text
    assert "validation loss rose" in md_text  # 0.33 -> 0.53 while training loss fell
    for text in (md_text, html_text):
        assert VERDICT in text and "0123456789abcdef0123" in text and "Across stages" in text
    linked = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md_text)
    stems = sorted(Path(p).stem for p in linked)
    assert stems == ["f1_by_size", "graphs", "heatmaps", "loss", "reliability", "roc_pr",
                     "roc_pr.larger", "speedup", "transfer"]  # the second stage: its ROC / PR
    for p in linked:
        assert (reports / p).read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.stem for p in (reports / run.name).parent.glob("*/*.png")) == stems
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html_text)
    assert len(imgs) == len(linked) and all(base64.b64decode(b).startswith(PNG_MAGIC) for b in imgs)
    assert 'class="banner nogo"' in html_text
    assert not list(reports.rglob(".*"))  # no temporaries left


def test_a_current_report_is_not_redrawn(run, tmp_path):
    reports = tmp_path / "reports"
    md, page = write_report(run, reports)
    stamps = [p.stat().st_mtime_ns for p in (md, page)]
    assert [p.stat().st_mtime_ns for p in write_report(run, reports)] == stamps
    next(reports.glob("*/heatmaps.png")).unlink()  # a figure gone: drawn again
    write_report(run, reports)
    assert next(reports.glob("*/heatmaps.png")).is_file()
    assert md.stat().st_mtime_ns != stamps[0]


def test_print_run_and_tables(run, evaluation):
    out = Console(record=True, width=250)
    print_run(run, out)
    text = out.export_text()
    order = [text.index(s) for s in (VERDICT, "Gates: NO-GO", "Training warning: validation loss rose",
                                     "Stage held_out: held_out graphs", "Stage larger",
                                     "Across stages", "Training loss (mean", "Provenance")]
    assert order == sorted(order)
    assert "f1 vs expert" in text and "PC¹" in text and "GES not run" in text
    value, interval = estimate_text(evaluation.stage("held_out").summary["model"]["auroc"]).split(" [")
    assert re.search(rf"│ model +│ .*│ {value} +│", text) and f"[{interval}" in text  # stacked
    narrow = _text(evaluation_table(evaluation.stage("held_out"), N_BOOT), width=100)
    assert f"[{interval}" in narrow  # the summary fits a 100-column terminal without folding
    ev = _text(evaluation_table(evaluation.stage("larger"), N_BOOT))
    assert "8 nodes" in ev and "PC¹" in ev and "random²" in ev
    table = _text(runs_table(run.parents[1]))
    f1 = evaluation.stage().summary["model"]["f1"].value
    assert f"{f1:.3f} /" in table and "NO-GO" in table and "1 h 05 min" in table


def test_partial_and_old_runs_still_report(tmp_path):
    root = tmp_path / "registry"
    bare = write_run(root / "phase2a" / "r0", metrics=METRICS_LOG[:1])
    old = write_run(root / "phase2a" / "r1")
    _write(old / "evaluation.json", {"model": {"f1": 0.5}, "n_graphs": 3})  # before the typed record
    for folder in (bare, old):
        md, page = write_report(folder, tmp_path / "reports")
        md_text, html_text = md.read_text(), page.read_text()
        assert "No gate verdict" in md_text and 'class="banner none"' in html_text
        assert "## Evaluation" not in md_text
    assert "from an earlier acbo" in md_text and "evaluation.json + evaluation.npz" not in md_text
    assert load_run(old).evaluation is None
    go = write_run(root / "phase2c" / "r2", gates={"verdict": "GO", "groups": {}, "gates": []})
    md, page = write_report(go, tmp_path / "reports")
    assert "**GO: no gates**" in md.read_text() and 'class="banner go"' in page.read_text()
    open_ = write_run(root / "phase2c" / "r3", gates={**GATES, "verdict": "INCONCLUSIVE"})
    assert 'class="banner inconclusive"' in write_report(open_, tmp_path / "reports")[1].read_text()
    out = Console(record=True, width=200)
    print_run(old, out)
    assert "from an earlier acbo" in out.export_text()


def test_index_links_reports(tmp_path, evaluation, run):
    root = run.parents[1]
    other = write_run(root / "phase2a" / "20250102-090000-ef01")
    lock = json.loads((other / "lock.json").read_text())
    (other / "lock.json").write_text(json.dumps({**lock, "started": "2025-01-02T09:00:00+00:00"}))
    _seal(other)
    assert [r.run_id for r in list_runs(root)] == [other.name, run.name]  # newest first
    reports = tmp_path / "reports"
    write_report(run, reports)
    index = write_index(root, reports).read_text()
    assert 'href="phase2b-20250101-120000-abcd.html"' in index and "not generated" in index
    assert index.index(other.name) < index.index(run.name)


def test_figures_only_where_they_apply(evaluation):
    from engine.report import stage_plots as sp

    larger = evaluation.stage("larger")
    one = Evaluation({"larger": larger}, 0.5, N_BOOT, 0)
    for fn, arg in ((sp.f1_by_size, one), (sp.transfer, one)):
        with pytest.raises(ValueError):  # one size only; one stage only
            fn(arg)
    untimed = StageResult(**{**larger.__dict__, "sides": {
        k: Side(**{**v.__dict__, "seconds": np.full(larger.n_graphs, np.nan)})
        for k, v in larger.sides.items()}})
    with pytest.raises(ValueError):
        sp.speedup(untimed)
    assert sp.heatmaps(larger).startswith(PNG_MAGIC)
    assert sp.f1_by_size(evaluation).startswith(PNG_MAGIC)


# --------------------------------------------------------------------------- training, graphs, regret

# phase 2A's shape: each log point timed only its last call (1.8 s), the stage took 46 s; the
# first call compiled; validation loss rose 0.33 -> 0.55 while the training loss fell
TRAIN_LOG = [{"step": s, "loss": 9.0, "loss_mean": 1.0 / s, "time_s": 1.8 if s > 100 else 5.0,
              "examples_per_s": 1000.0 if s > 100 else 300.0, "lr": 1e-3,
              "val_loss": 0.33 if s <= 300 else 0.55} for s in range(100, 1100, 100)]
SPEC = {"description": "Phase 2A: a hand-made run.", "name": "phase2a", "seed": 1,
        "expert": {"kind": "parent_scale", "prior": {"kind": "doubly_robust", "max_parents": 2},
                   "n_trials": 10},
        "train": {"steps": 1000, "batch_size": 32, "optimizer": {"kind": "adam", "lr": 1e-3}},
        "model": {"kind": "stats", "dim": 16}, "stage": {"uses": None}}


def test_training_section_has_true_numbers_and_warns(tmp_path):
    from engine.report.training import training_facts, training_grid

    meta = {"seconds": 46.0, "steps": 1000, "stopped_early": False,
            "warnings": ["WARNING: the trained model predicts an empty graph"]}
    f = training_facts(TRAIN_LOG, meta, SPEC)
    assert f.seconds == 46.0 and not f.seconds_estimated  # the stage's wall time, not 1.8 s
    assert f.examples_per_s == 1000.0 and f.steps_per_s == pytest.approx(1000 / 32)
    assert f.compile_seconds == pytest.approx(5.0 * (1 - 300 / 1000))  # the first call's excess
    assert f.loss_key == "loss_mean" and f.loss[0] == (100.0, 0.01)  # the smoothed loss
    assert f.warnings[0].startswith("validation loss rose 0.330 → 0.550 (steps 100 → 1000)")
    assert f.warnings[1] == "the trained model predicts an empty graph"
    rows = {r[0][0]: r[1] for r in training_grid(TRAIN_LOG, meta, SPEC).rows}
    assert rows["Training time (train stage, wall clock)"] == ("46.0 s", None)
    assert rows["Of which compiling the training step (≈, first call)"][0] == "3.50 s"
    assert rows["Throughput (compile excluded: median of 9 log points)"][0] == \
        "1000 examples/s (31.2 steps/s at batch 32)"
    assert rows["Training loss (mean over each log interval)"][0] == "0.010 → 0.001 (lowest 0.001 at step 1000)"
    assert rows["Validation loss"][0] == "0.330 → 0.550 (lowest 0.330 at step 100)"
    # without the stage's record: estimated from the throughput (5 s, then 100 steps of 32 at 1000/s)
    est = training_facts(TRAIN_LOG, None, SPEC)
    assert est.seconds_estimated and est.seconds == pytest.approx(5.0 + 9 * 3.2 + (100 - 300 * 5.0 / 32) * 0.032)
    grid = training_grid(TRAIN_LOG, None, SPEC)
    assert "Training time (≈, from the logged throughput)" in {r[0][0] for r in grid.rows}
    assert "estimated" in grid.caption

    # in the report: the warning right under the gates, the true total in the training table
    run = write_run(tmp_path / "registry" / "phase2a" / "r1", gates=GATES, metrics=TRAIN_LOG, spec=SPEC,
                    lock={"stage_hashes": {"train": "abc123"}, "computed": ["train"]}, train_meta=meta)
    md = write_report(run, tmp_path / "reports")[0].read_text()
    order = [md.index(s) for s in ("### Gates: NO-GO", "> **Training warning (see Training): validation loss rose",
                                   "## What was evaluated", "## Training", "| Training time (train stage, wall clock) | 46.0 s |")]
    assert order == sorted(order)
    assert "| Warning | **the trained model predicts an empty graph** |" in md
    assert "(this run trained it)" in md and "Expert: `parent_scale` (prior doubly_robust (max_parents 2), n_trials 10)." in md
    assert "Phase 2A: a hand-made run." in md


def test_what_was_evaluated_names_the_run_that_trained_the_model(tmp_path, evaluation):
    root = tmp_path / "registry"
    write_run(root / "phase2a" / "20250101-090000-aaaa", metrics=TRAIN_LOG[:2], spec=SPEC,
              lock={"stage_hashes": {"train": "abc123"}, "computed": ["simulate", "train"],
                    "started": "2025-01-01T09:00:00+00:00"})
    write_run(root / "phase2a" / "20250101-100000-bbbb", metrics=TRAIN_LOG[:2], spec=SPEC,
              lock={"stage_hashes": {"train": "abc123"}, "computed": [], "reused": ["train"]})
    user = write_run(root / "phase2b" / "r1", evaluation, GATES,
                     lock={"stage_hashes": {"train": "abc123"}, "computed": ["evaluate"]})
    md = write_report(user, tmp_path / "reports")[0].read_text()
    assert ("Model under test: the model trained by spec `phase2a` (`uses`), trained by run "
            "`phase2a/20250101-090000-aaaa`.") in md
    # each stage's graph distribution, sizes, data and expert in one table
    assert "| Stage | Graph distribution | Graphs | Nodes | Edges (mean) | Data | Expert |" in md
    assert "| held_out | simulated for this stage | 30 | 3–7 |" in md
    orphan = write_run(root / "phase2b" / "r2", evaluation, lock={"stage_hashes": {"train": "fff999"}})
    assert "train stage `fff999` (the run that built it is not in this registry)" in \
        write_report(orphan, tmp_path / "reports")[0].read_text()


def test_drawn_graphs_mark_false_and_missed_edges(evaluation):
    from matplotlib.figure import Figure

    from engine.report import graphs

    st = evaluation.stage("held_out")
    for side in ("model", "expert", "pc"):
        for i in range(5):
            idx = np.flatnonzero(st.var_mask[i])
            truth = st.adjacency[i][np.ix_(idx, idx)]
            judged, pred = graphs.edge_status(st, side, i, idx)
            n_false, n_missed = graphs._panel(Figure().add_subplot(), graphs.layout(truth), truth,
                                             int(np.flatnonzero(idx == st.target[i])[0]), judged, pred)
            want_false = (judged & (pred > 0.5) & ~truth).sum()
            want_missed = (judged & (pred < 0.5) & truth).sum()
            assert (n_false, n_missed) == (want_false, want_missed)
            if side == "model":  # judged on the target's parents only
                pred_i, truth_i = st.sides[side].pred[i], st.truth[i]
                assert (n_false, n_missed) == (((pred_i > 0.5) & ~truth_i & st.mask[i]).sum(),
                                               ((pred_i < 0.5) & truth_i).sum())
    pos = graphs.layout(np.triu(np.ones((4, 4), bool), 1))
    assert [pos[k][1] for k in range(4)] == sorted((pos[k][1] for k in range(4)), reverse=True)  # causes above
    assert graphs.drawn_graphs(st).startswith(PNG_MAGIC)


def test_regret_curves_from_synthetic_arrays():
    from types import SimpleNamespace

    from engine.report import regret

    rng = np.random.default_rng(0)
    T, E = 12, 40
    decay = np.exp(-np.arange(T) / 3)[:, None]
    arrays = {"model": decay * rng.uniform(0.5, 1.5, (1, E)),
              "expert": 0.5 * decay * rng.uniform(0.5, 1.5, (1, E)),
              "random": np.full((T, E), 1.0) + rng.normal(0, 0.1, (T, E))}
    arrays["model"][-3:, :5] = np.nan  # episodes that stopped early
    assert regret.regret_curves(arrays).startswith(PNG_MAGIC)
    assert regret.regret_curves(arrays, cumulative=True, log=False).startswith(PNG_MAGIC)
    mean, low, high = regret.mean_band(arrays["expert"])
    assert np.allclose(mean, arrays["expert"].mean(1)) and (low <= mean).all() and (mean <= high).all()
    assert np.allclose(regret.mean_band(arrays["model"])[0][-1], np.nanmean(arrays["model"][-1]))
    wide = regret.mean_band(arrays["random"][:, :5])
    narrow = regret.mean_band(arrays["random"])
    assert ((narrow[2] - narrow[1]).mean() < (wide[2] - wide[1]).mean())  # more episodes, tighter
    s = regret.regret_summary(arrays)
    assert s["expert"]["trials"] == T and s["expert"]["episodes"] == E
    assert s["expert"]["final"][0] < s["model"]["final"][0] < s["random"]["final"][0]
    for bad in ({}, {"a": np.zeros((0, 3))}, {"a": np.full((3, 3), np.nan)}, {"a": np.zeros((2, 2, 2))}):
        with pytest.raises(ValueError):
            regret.regret_curves(bad)
    # from an [optimize] stage: best outcome so far minus the optimum, trials x episodes
    best = np.minimum.accumulate(rng.normal(0, 1, (E, T)), axis=1)
    stage = SimpleNamespace(name="opt", optimum=np.full(E, -2.0),
                            sides={"model": SimpleNamespace(best_y=best), "pc": SimpleNamespace(best_y=None)})
    r = regret.stage_regret(stage)
    assert list(r) == ["model"] and r["model"].shape == (T, E) and np.allclose(r["model"], (best + 2.0).T)
    assert regret.stage_regret(SimpleNamespace(optimum=None, sides={})) == {}
    assert regret.stage_figure(stage).startswith(PNG_MAGIC)
    with pytest.raises(ValueError):
        regret.stage_figure(SimpleNamespace(name="held_out", optimum=None, sides={}))


def test_numbers_read_the_same_everywhere():
    from engine.report.run import fmt_duration, fmt_pct, fmt_seconds
    from engine.report.verdict import drop_interval, worded_drop

    assert [fmt_seconds(x) for x in (0.000153, 0.5, 1.8, 46.0, 466.0, 4000.0, None)] == \
        ["0.153 ms", "500 ms", "1.80 s", "46.0 s", "7 min 46 s", "1 h 06 min", "—"]
    assert fmt_duration(46.04) == "46.0 s" and fmt_duration(3930) == "1 h 05 min"
    assert [fmt_pct(x) for x in (0.25, 0.01, 0.005, 0.123, -0.02)] == ["25", "1", "0.5", "12.3", "-2"]
    assert worded_drop(0.05) == "5% worse" and worded_drop(-0.03) == "3% better" and worded_drop(0) == "no change"
    assert drop_interval(0.05, -0.02, 0.12) == "5% worse [2% better, 12% worse]"
    assert drop_interval(-0.05, -0.08, -0.01) == "5% better [1, 8]"
    assert drop_interval(0.25, 0.18, 0.31) == "25% worse [18, 31]"


def test_index_plots_key_metrics_across_runs(tmp_path, evaluation):
    root = tmp_path / "registry"
    for i, seed in enumerate((1, 2, 3)):
        write_run(root / "phase2b" / f"2025010{i + 1}-120000-abcd", make_evaluation(seed),
                  lock={"started": f"2025-01-0{i + 1}T12:00:00+00:00"})
    reports = tmp_path / "reports"
    index = write_index(root, reports).read_text()
    imgs = re.findall(r'<figure data-figure="runs">.*?src="data:image/png;base64,([A-Za-z0-9+/=]+)"', index, re.S)
    assert len(imgs) == 1 and base64.b64decode(imgs[0]).startswith(PNG_MAGIC)
    assert "Key metrics across runs" in index and index.count("not generated") == 3
    png = reports / "index-runs.png"
    before = png.stat().st_mtime_ns
    write_index(root, reports)
    assert png.stat().st_mtime_ns == before  # the same runs: not redrawn
    empty = tmp_path / "empty"
    write_run(empty / "phase2a" / "r0", metrics=METRICS_LOG[:2])
    assert "data:image/png" not in write_index(empty, tmp_path / "reports2").read_text()


def _events(path: Path):
    """The records of a TensorBoard event file (TFRecord framing)."""
    import struct

    from tensorboardX.proto import event_pb2

    data, i = path.read_bytes(), 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i:i + 8])
        e = event_pb2.Event()
        e.ParseFromString(data[i + 12:i + 12 + n])
        i += 16 + n
        yield e


def test_tensorboard_runs_are_named_by_spec_and_run_with_hparams(tmp_path, evaluation):
    from engine.train.logging import MetricsLog, hparams_of

    hp = hparams_of(SPEC)
    assert hp["spec"] == "phase2a" and hp["seed"] == 1 and hp["train.batch_size"] == 32
    assert hp["train.optimizer.lr"] == 1e-3 and hp["model.kind"] == "stats"
    assert hp["expert.prior.kind"] == "doubly_robust" and "description" not in hp
    run = write_run(tmp_path / "registry" / "phase2a" / "20250101-120000-abcd", evaluation,
                    metrics=TRAIN_LOG, spec=SPEC)
    reports = tmp_path / "reports"
    write_report(run, reports)
    files = list((reports / "tensorboard" / "phase2a" / "20250101-120000-abcd").glob("events.*"))
    assert len(files) == 1
    tags, plugins, content = set(), set(), b""
    for e in _events(files[0]):
        for v in e.summary.value:
            tags.add(v.tag)
            plugins.add(v.metadata.plugin_data.plugin_name)
            content += v.metadata.plugin_data.content
    assert {"loss_mean", "val_loss", "result/model_f1", "result/val_loss_best"} <= tags
    assert "hparams" in plugins and b"train.batch_size" in content and b"result/model_f1" in content
    # training's own log: a run name and the spec's hyper-parameters when the trainer gives them
    log = MetricsLog(tmp_path / "work", 0, name="phase2a/20250101-120000-abcd", hparams=hp)
    log.write({"step": 1, "loss": 0.5, "loss_mean": 0.5})
    log.close()
    (event,) = (tmp_path / "work" / "tensorboard" / "phase2a" / "20250101-120000-abcd").glob("events.*")
    assert any(v.metadata.plugin_data.plugin_name == "hparams" for e in _events(event) for v in e.summary.value)


def test_write_reports_draws_stale_runs_in_processes(tmp_path):
    from engine.report import write_reports

    root = tmp_path / "registry"
    runs = [write_run(root / "phase2a" / f"r{i}", metrics=TRAIN_LOG, spec=SPEC) for i in range(3)]
    reports = tmp_path / "reports"
    done = write_reports(runs, reports, workers=2)
    assert sorted(done) == sorted(runs) and all(md.is_file() and page.is_file() for md, page in done.values())
    stamps = {p: page.stat().st_mtime_ns for p, (_, page) in done.items()}
    again = write_reports(runs, reports, workers=2)  # all current: none redrawn
    assert {p: page.stat().st_mtime_ns for p, (_, page) in again.items()} == stamps
