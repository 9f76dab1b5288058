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
from engine.evaluate.procedure import BASELINE_NOTES
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
              graph_scores=pc_w, graph_pred=pc_w, note=BASELINE_NOTES["pc"])
    rs = rng.random((n, d, d)) * vm[:, :, None] * vm[:, None, :]
    rand = Side(probs=col(rs), pred=col((rs > 0.7).astype(float)), seconds=np.full(n, 1e-5),
                graph_scores=rs, graph_pred=(rs > 0.7).astype(float), note=BASELINE_NOTES["random"])
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
              metrics: list | None = None):
    folder.mkdir(parents=True)
    (folder / "lock.json").write_text(json.dumps(_lock(folder.parent.name, folder.name,
                                                       "2025-01-01T12:00:00+00:00",
                                                       "2025-01-01T13:05:30+00:00")))
    (folder / "resolved.json").write_text(json.dumps({"description": "A hand-made run.",
                                                      "stage": {"uses": "phase2a"}}))
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
    assert line == ("NO-GO: 2 of 2 gates not GO; pooled f1 drop vs expert on held_out 25% [18, 31] "
                    "> 20%; pooled auroc on larger 0.720 [0.680, 0.770] not clearly >= 0.700")
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
    assert "| speedup | NO-GO | 1.36x [1.2, 1.5] | 12 | >= 2x (NO-GO < 1.5x) |" in md_text
    assert "| f1 vs expert | **GO** | 5% [-2, 12] | 30 | <= 20% |" in md_text
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
    assert stems == ["f1_by_size", "heatmaps", "loss", "reliability", "roc_pr", "speedup", "transfer"]
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
    order = [text.index(s) for s in (VERDICT, "Gates: NO-GO", "Stage held_out: held_out graphs",
                                     "Stage larger", "Across stages", "Training", "Provenance")]
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
    assert f"{f1:.3f} /" in table and "NO-GO" in table and "1h05m" in table


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
