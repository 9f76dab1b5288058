"""Reports over fake run folders: tables render, documents are written, partial runs still report."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from engine.evaluate.metrics import score_parents, timing_summary
from engine.report import (
    evaluation_table,
    gates_table,
    list_runs,
    load_run,
    print_run,
    runs_table,
    write_index,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _eval_record(rng, n=40, d=7):
    nv = rng.integers(3, d + 1, n)
    mask = np.arange(d)[None] < nv[:, None]
    mask[:, 0] = False
    truth = (rng.random((n, d)) < 0.35) & mask
    model_p = np.clip(0.3 * truth + 0.7 * rng.random((n, d)), 0, 1) * mask
    expert_p = np.clip(0.45 * truth + 0.55 * rng.random((n, d)), 0, 1) * mask
    model = score_parents(model_p, truth, mask, n_boot=100, per_graph=True)
    expert = score_parents(expert_p, truth, mask, n_boot=100, per_graph=True)
    expert["map_f1"] = 0.91
    expert_s = rng.uniform(20, 200, n)
    model_s = rng.uniform(0.01, 0.05, n)
    timing = {"expert_s": expert_s.tolist(), "model_s": model_s.tolist(),
              "expert_compile_s": 3.2, "model_compile_s": 11.5,
              **timing_summary(expert_s, model_s, n_boot=100)}
    examples = [{"n_vars": int(nv[i]), "target": 0, "truth": truth[i, : nv[i]].tolist(),
                 "model": model_p[i, : nv[i]].tolist(), "expert": expert_p[i, : nv[i]].tolist()}
                for i in range(4)]
    return {"split": "heldout", "n_graphs": n, "threshold": 0.5,
            "model": {k: v for k, v in model.items() if k != "per_graph"},
            "expert": {k: v for k, v in expert.items() if k != "per_graph"},
            "timing": timing,
            "per_graph": {"n_vars": nv.tolist(), "model_f1": model["per_graph"]["f1"],
                          "expert_f1": expert["per_graph"]["f1"]},
            "examples": examples}


def _lock(spec, run_id, started, finished, status="complete", dirty=True):
    return {"run_id": run_id, "spec_name": spec, "spec_path": f"specs/{spec}.toml",
            "spec_hash": "a1b2c3d4e5f6a7b8c9d0", "stage_hashes": {"simulate": "111aaa", "train": "222bbb"},
            "git_sha": "0123456789abcdef0123", "git_dirty": dirty,
            "versions": {"jax": "0.10.0", "equinox": "0.13.0"}, "devices": ["cpu:0"], "seed": 7,
            "started": started, "finished": finished, "overrides": ["train.steps=100"],
            "status": status}


def _write(path: Path, obj):
    path.write_text(json.dumps(obj))
    _seal(path.parent)


def _seal(run_dir: Path):
    """Record every file's checksum in the run's manifest, as engine.runs.Run does."""
    from engine.registry import sha256_file, write_manifest

    files = {p.name: sha256_file(p) for p in run_dir.iterdir() if p.is_file() and p.name != "manifest.json"}
    write_manifest(run_dir / "manifest.json", {"files": files})


@pytest.fixture
def registry(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "registry"
    full = root / "phase2a" / "20250101-120000-abcd"
    full.mkdir(parents=True)
    _write(full / "lock.json", _lock("phase2a", full.name, "2025-01-01T12:00:00+00:00",
                                     "2025-01-01T13:05:30+00:00"))
    lines = [{"step": s, "loss": float(2.0 * np.exp(-s / 300) + 0.05), "time_s": s * 0.1,
              "examples_per_s": 1200.0, "lr": 1e-3, **({"val_loss": 0.3} if s % 200 == 0 else {})}
             for s in range(0, 1000, 20)]
    (full / "metrics.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    _write(full / "evaluation.json", _eval_record(rng))
    _write(full / "gates.json", {"verdict": "NO-GO", "gates": [
        {"name": "accuracy_drop_f1", "kind": "accuracy_drop", "value": 0.12, "op": "<=",
         "threshold": 0.1, "passed": False, "evidence": {"model_f1": 0.7, "expert_f1": 0.8}},
        {"name": "speedup", "kind": "speedup", "value": 4000.0, "op": ">=", "threshold": 100,
         "passed": True, "evidence": "median over 40 graphs"}]})
    # a newer run that only trained (still running, no evaluation, no gates)
    partial = root / "phase2b" / "20250102-090000-ef01"
    partial.mkdir(parents=True)
    _write(partial / "lock.json", _lock("phase2b", partial.name, "2025-01-02T09:00:00+00:00",
                                        None, status="running", dirty=False))
    (partial / "metrics.jsonl").write_text(json.dumps(lines[0]) + "\n")
    _seal(partial)
    (root / "phase2b" / "not-a-run").mkdir()  # no run files: ignored
    return root, full, partial


def _text(renderable) -> str:
    console = Console(record=True, width=220)
    console.print(renderable)
    return console.export_text()


def test_tables_render(registry):
    root, full, partial = registry
    runs = list_runs(root)
    assert [r.run_id for r in runs] == [partial.name, full.name]  # newest first
    text = _text(runs_table(root))
    run = load_run(full)
    f1 = run.evaluation["model"]["f1"]
    assert "phase2a" in text and "phase2b" in text and "NO-GO" in text
    assert "01234567*" in text and "a1b2c3d4e5" in text and "1h05m" in text
    assert f"{f1:.3f}" in text and "running" in text
    ev = _text(evaluation_table(run.evaluation))
    assert "AUROC (pooled)" in ev and "chance" in ev and "F1 of MAP parent set" in ev and "0.910" in ev
    assert f"{run.evaluation['expert']['auroc']:.3f}" in ev and "N = 40 heldout graphs" in ev
    gt = _text(gates_table(run.gates))
    assert "FAIL" in gt and "PASS" in gt and "accuracy_drop_f1" in gt and "1/2 gates passed" in gt
    # verdict is coloured: NO-GO red, GO green
    verdicts = {str(c): c.style for c in runs_table(root).columns[-1]._cells}
    assert verdicts["NO-GO"] == "bold red"
    bare = root / "phase2c" / "r0"
    bare.mkdir(parents=True)
    _write(bare / "gates.json", {"verdict": "GO", "gates": []})
    verdicts = {str(c): c.style for c in runs_table(root).columns[-1]._cells}
    assert verdicts["GO"] == "bold green"
    out = Console(record=True, width=200)
    print_run(full, out)
    printed = out.export_text()
    assert "Provenance" in printed and "Timing" in printed and "Gates: NO-GO" in printed


def test_report_documents(registry, tmp_path):
    root, full, _ = registry
    reports = tmp_path / "reports"
    md, page = write_report(full, reports)
    assert md == reports / "phase2a-20250101-120000-abcd.md" and md.is_file() and page.is_file()
    run = load_run(full)
    md_text, html_text = md.read_text(), page.read_text()
    f1 = f"{run.evaluation['model']['f1']:.3f}"
    for text in (md_text, html_text):
        assert "NO-GO" in text and f1 in text and "accuracy_drop_f1" in text
        assert "0123456789abcdef0123" in text and "jax 0.10.0" in text  # provenance
    fig_dir = reports / "phase2a-20250101-120000-abcd"
    pngs = sorted(p.stem for p in fig_dir.glob("*.png"))
    assert pngs == ["f1_by_size", "heatmaps", "loss", "metrics", "speedup"]
    for p in fig_dir.glob("*.png"):
        assert p.read_bytes().startswith(PNG_MAGIC)
        assert f"phase2a-20250101-120000-abcd/{p.name}" in md_text
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html_text)
    assert len(imgs) == 5 and all(base64.b64decode(b).startswith(PNG_MAGIC) for b in imgs)
    assert 'class="banner nogo"' in html_text and ".banner.nogo{background:#d0343a}" in html_text
    assert not list(reports.glob(".*.tmp")) and not list(reports.rglob(".*"))  # no temporaries left


def test_partial_run_still_reports(registry, tmp_path):
    root, _, partial = registry
    (partial / "metrics.jsonl").unlink()
    _seal(partial)
    md, page = write_report(partial, tmp_path / "reports")
    md_text, html_text = md.read_text(), page.read_text()
    assert "evaluation.json" in md_text and "gates.json" in md_text  # named as missing
    assert "No gate verdict" in html_text and 'class="banner none"' in html_text
    assert "data:image/png" not in html_text
    # a bare folder with only gates (GO) and no lock
    bare = root / "phase2c" / "r1"
    bare.mkdir(parents=True)
    _write(bare / "gates.json", {"verdict": "GO", "gates": []})
    md, page = write_report(bare, tmp_path / "reports")
    assert md.name == "phase2c-r1.md" and 'class="banner go"' in page.read_text()
    assert "Verdict: GO" in md.read_text()


def test_index_links_reports(registry, tmp_path):
    root, full, partial = registry
    reports = tmp_path / "reports"
    write_report(full, reports)
    index = write_index(root, reports).read_text()
    assert 'href="phase2a-20250101-120000-abcd.html"' in index
    assert "not generated" in index and partial.name in index
    assert index.index(partial.name) < index.index(full.name)  # newest first


def test_plots_full_graph_heatmap_and_degenerate_inputs():
    from engine.report import plots

    rng = np.random.default_rng(1)
    ex = [{"n_vars": 4, "truth": (rng.random((4, 4)) < 0.3).tolist(),
           "model": rng.random((4, 4)).tolist()} for _ in range(2)]
    assert plots.parent_heatmaps(ex).startswith(PNG_MAGIC)
    for fn, arg in ((plots.loss_curve, []), (plots.metric_bars, {"model": {}}),
                    (plots.speedup_histogram, {"expert_s": [1.0], "model_s": [0.0]}),
                    (plots.f1_by_size, {"n_vars": []}), (plots.parent_heatmaps, [])):
        with pytest.raises(ValueError):
            fn(arg)
    # one graph, one speedup, negative losses: still drawable
    assert plots.speedup_histogram({"speedups": [3.0, float("nan")]}).startswith(PNG_MAGIC)
    assert plots.loss_curve([{"step": 0, "loss": -1.0}, {"step": 1, "loss": 0.5}]).startswith(PNG_MAGIC)
