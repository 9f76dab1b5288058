"""Nothing silently wrong: every run-folder and stage file is verified before use, a damaged one is
named (exit 2, never `internal error:`), a dead run reads as `died`, two applies of one spec at once
give one correct build of each stage and clean logs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
RUN_FILES = ["spec.toml", "resolved.json", "lock.json", "metrics.jsonl", "model.eqx",
             "evaluation.json", "evaluation.npz", "gates.json", "manifest.json"]
INFER_READS = {"resolved.json", "model.eqx", "manifest.json"}


@pytest.fixture
def registry(smoke_registry, tmp_path):
    root = tmp_path / "registry"
    shutil.copytree(smoke_registry, root)
    run, *others = sorted((root / "smoke").iterdir())  # other tests may have applied again
    for other in others:
        shutil.rmtree(other)
    return root, run


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory):
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "data.csv"
    x = rng.normal(size=(50, 4))
    path.write_text("A,B,C,D\n" + "".join(",".join(f"{v:.5f}" for v in row) + "\n" for row in x))
    return path


def _flip(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def _clean(result) -> None:
    assert "internal error" not in result.output and "Traceback" not in result.output, result.output


def test_the_run_folder_holds_exactly_the_recorded_files(registry):
    _, run = registry
    manifest = json.loads((run / "manifest.json").read_text())
    assert sorted(manifest["files"]) == sorted(set(RUN_FILES) - {"manifest.json"})
    assert sorted(p.name for p in run.iterdir()) == sorted(RUN_FILES)


@pytest.mark.parametrize("name", RUN_FILES)
def test_a_flipped_byte_in_any_run_file_is_named_by_report_and_infer(registry, csv_file, tmp_path, name):
    root, run = registry
    _flip(run / name)
    report = CliRunner().invoke(app, ["report", "--registry", str(root), "--reports", str(tmp_path)])
    _clean(report)
    assert report.exit_code == 2, report.output
    assert f"damaged file: {run / name}" in report.output and "damaged" in report.output
    assert not list(tmp_path.glob("smoke-*.html"))  # no report drawn from a damaged run
    infer = CliRunner().invoke(app, ["infer", str(run), str(csv_file)])
    _clean(infer)
    if name in INFER_READS:
        assert infer.exit_code == 2 and str(run / name) in infer.output, infer.output
        assert "nan" not in infer.stdout
    else:  # infer does not read it: its answer is the undamaged model's
        assert infer.exit_code == 0, infer.output


def test_a_plausible_edit_of_the_evaluation_is_caught(registry, tmp_path):
    """The issue's case: AUROC 0.766 -> 0.966 is still valid JSON; only the checksum sees it."""
    root, run = registry
    path = run / "evaluation.json"
    text = path.read_text()
    auroc = json.loads(text)["stages"][0]["summary"]["model"]["auroc"]["value"]
    path.write_text(text.replace(json.dumps(auroc), json.dumps(min(auroc + 0.2, 0.99)), 1))
    assert path.read_text() != text
    result = CliRunner().invoke(app, ["report", "--registry", str(root), "--reports", str(tmp_path)])
    _clean(result)
    assert result.exit_code == 2 and "evaluation.json: checksum mismatch" in result.output


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing", "extra_file"])
def test_damaged_run_folder_shapes(registry, csv_file, tmp_path, damage):
    root, run = registry
    if damage == "garbage":
        (run / "manifest.json").write_text("{not json")
        named = run / "manifest.json"
    elif damage == "truncated":
        (run / "model.eqx").write_bytes((run / "model.eqx").read_bytes()[:100])
        named = run / "model.eqx"
    elif damage == "missing":
        (run / "lock.json").unlink()
        named = run / "lock.json"
    else:
        (run / "notes.txt").write_text("stray")
        named = run / "notes.txt"
    result = CliRunner().invoke(app, ["report", "--registry", str(root), "--reports", str(tmp_path)])
    _clean(result)
    assert result.exit_code == 2 and str(named) in result.output, result.output
    if damage in ("garbage", "truncated"):
        infer = CliRunner().invoke(app, ["infer", str(run), str(csv_file)])
        _clean(infer)
        assert infer.exit_code == 2 and str(named) in infer.output


@pytest.mark.parametrize("damage", ["garbage", "not_an_object", "flipped_hash"])
def test_a_damaged_stage_manifest_is_named_with_how_to_recompute(registry, damage):
    root, _ = registry
    manifest = next((root / "_stages" / "train").glob("*/manifest.json"))
    if damage == "garbage":
        manifest.write_text("\x00garbage")
    elif damage == "not_an_object":
        manifest.write_text("[1, 2]")
    else:
        m = json.loads(manifest.read_text())
        m["files"]["model.eqx"] = "0" * 64
        manifest.write_text(json.dumps(m))
    result = CliRunner().invoke(app, ["apply", str(SPECS / "smoke.toml"), "--registry", str(root)])
    _clean(result)
    assert result.exit_code == 2, result.output
    assert "damaged file:" in result.output and "--force" in result.output and "train" in result.output


def test_a_run_whose_process_died_reads_as_died(registry, tmp_path):
    from engine.report import list_runs
    from engine.runs import RunFolder, this_process

    root, run = registry
    child = subprocess.run(
        [sys.executable, "-c", "import json; from engine.runs import this_process; print(json.dumps(this_process()))"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    dead = json.loads(child.stdout)

    def with_owner(owner):
        lock = json.loads((run / "lock.json").read_text())
        lock.update(status="running", finished=None, owner=owner)
        (run / "lock.json").write_text(json.dumps(lock))
        from engine.registry import sha256_file, write_manifest

        manifest = RunFolder(run).manifest
        manifest["files"]["lock.json"] = sha256_file(run / "lock.json")
        write_manifest(run / "manifest.json", manifest)
        (record,) = list_runs(root)
        return record.status

    assert with_owner(this_process()) == "running"
    assert with_owner(dead) == "died"
    assert with_owner({**dead, "host": "elsewhere"}) == "running"  # cannot tell from here
    result = CliRunner().invoke(app, ["report", "--registry", str(root), "--reports", str(tmp_path)])
    assert result.exit_code == 0 and "died" in result.output, result.output


def _apply(root: Path, spec: Path, log: Path):
    env = {**os.environ, "ACBO_REGISTRY": str(root), "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "apply", str(spec)],
        cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
    )


def test_two_applies_of_one_spec_at_once_build_each_stage_once(tmp_path):
    """Started together: one builds each stage, the other waits and reuses it; both runs are
    complete and identical in what they recorded, and the training log has each step once."""
    spec = tmp_path / "specs" / "smoke.toml"
    spec.parent.mkdir()
    spec.write_text((SPECS / "smoke.toml").read_text().replace('name = "smoke"', 'name = "twice"'))
    root = tmp_path / "registry"
    procs = [_apply(root, spec, tmp_path / f"log{i}.txt") for i in range(2)]
    codes = [p.wait(timeout=600) for p in procs]
    logs = [(tmp_path / f"log{i}.txt").read_text() for i in range(2)]
    assert codes == [0, 0], logs
    for log in logs:
        assert "internal error" not in log and "Traceback" not in log
    runs = sorted((root / "twice").iterdir())
    assert len(runs) == 2
    locks = [json.loads((r / "lock.json").read_text()) for r in runs]
    assert [lock["status"] for lock in locks] == ["complete", "complete"]
    # every stage computed by exactly one of them
    for stage in ("simulate", "expert", "demonstrations", "train", "evaluate"):
        assert sum(stage in lock["computed"] for lock in locks) == 1, (stage, locks)
    assert (runs[0] / "model.eqx").read_bytes() == (runs[1] / "model.eqx").read_bytes()
    steps = [json.loads(line)["step"] for line in (runs[0] / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 40
    stages = root / "_stages"
    assert not list(stages.glob("*/*.partial")), "a finished stage left its work folder"
    assert not [p for p in stages.rglob(".*") if p.is_file()], "stray temporary files"
    for i in range(2):
        from engine.runs import RunFolder

        RunFolder(runs[i]).verify()


@pytest.mark.parametrize("args, message", [
    (["schema", "-o", "{missing}/x.json"], "schema: {missing}/x.json: folder {missing} does not exist"),
    (["schema", "-o", "{tmp}"], "schema: {tmp}: is a directory; give a file name for the output"),
    (["report", "--registry", "{file}"], "registry {file}: not a folder"),
    (["report", "--registry", "{tmp}", "--reports", "{file}"], "reports folder {file}: not a folder"),
    (["apply", str(SPECS / "smoke.toml"), "--registry", "{file}"], "registry {file}: not a folder"),
    (["apply", str(SPECS / "smoke.toml"), "--registry", "{file}/sub"], "registry {file}/sub: cannot create it"),
    (["gate", str(SPECS / "smoke.toml"), "--registry", "{file}"], "registry {file}: not a folder"),
])
def test_folders_that_cannot_be_used_are_refused_before_any_work(tmp_path, args, message):
    file = tmp_path / "afile"
    file.write_text("x")
    fill = {"missing": str(tmp_path / "missing"), "tmp": str(tmp_path), "file": str(file)}
    result = CliRunner().invoke(app, [a.format(**fill) for a in args])
    _clean(result)
    assert result.exit_code == 2 and message.format(**fill) in result.output, result.output


def test_report_while_an_apply_rewrites_the_run_never_sees_damage(registry):
    """Run._write renames the file, then the manifest: a reader in between must read again, not
    call a healthy running run damaged."""
    import threading

    from engine.report import list_runs
    from engine.runs import Run, RunFolder

    root, run = registry
    writer = Run.__new__(Run)  # the run's writer, without starting an apply
    writer.dir, writer._files = run, dict(RunFolder(run).manifest["files"])
    writer.lock = json.loads((run / "lock.json").read_text())
    stop = threading.Event()

    def rewrite():
        i = 0
        while not stop.wait(0.003):  # far more often than an apply writes its run
            writer.lock["heartbeat"] = i = i + 1
            writer._write_lock()

    thread = threading.Thread(target=rewrite)
    thread.start()
    try:
        problems = [r.problem for _ in range(100) for r in list_runs(root) if r.problem]
    finally:
        stop.set()
        thread.join()
    assert problems == []
    assert writer.lock["heartbeat"] > 10  # the writer did race the reader


def test_a_training_log_damaged_before_a_resume_is_named(tmp_path):
    from engine.registry import CorruptArtifact
    from engine.train.logging import MetricsLog

    log = MetricsLog(tmp_path, 0, tensorboard=False)
    for step in (10, 20):
        log.write({"step": step, "loss": 1.0 / step})
    at_20 = log.digest()  # what checkpoint 20 records
    log.write({"step": 30, "loss": 0.1})
    log.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 40, "lo')  # torn by a kill
    resumed = MetricsLog(tmp_path, 20, tensorboard=False, expect_sha256=at_20)
    assert [r["step"] for r in resumed.records] == [10, 20]  # past the checkpoint: replayed
    _flip(tmp_path / "metrics.jsonl", offset=12)
    with pytest.raises(CorruptArtifact, match="metrics.jsonl: its lines up to step 20 changed"):
        MetricsLog(tmp_path, 20, tensorboard=False, expect_sha256=at_20)


def test_gate_refuses_a_spec_without_gates_before_any_work(tmp_path):
    spec = tmp_path / "nogates.toml"
    text = (SPECS / "smoke.toml").read_text()
    spec.write_text(text[: text.index("[[gates]]")])
    result = CliRunner().invoke(app, ["gate", str(spec), "--registry", str(tmp_path / "reg")])
    _clean(result)
    assert result.exit_code == 2 and "declares no [[gates]]" in result.output
    assert not (tmp_path / "reg" / "_stages").exists()  # nothing was simulated


def test_version():
    import engine

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"acbo {engine.__version__}\n"
    assert engine.__version__ not in ("", "0+unknown")  # installed: from the package metadata


def test_a_checksummed_scm_file_this_acbo_cannot_read_is_named(registry):
    """A stage file whose checksum holds but whose format is not this acbo's (an older
    engine's, or written damaged): named with --force, never an internal error."""
    from engine.registry import read_manifest, sha256_file, write_manifest

    root, _ = registry
    scm = next((root / "_stages" / "simulate").glob("*/scm.eqx"))
    scm.write_bytes(scm.read_bytes().split(b"\n", 1)[1])  # the leaves without their header
    manifest = read_manifest(scm.parent / "manifest.json", "")
    manifest["files"]["scm.eqx"] = sha256_file(scm)
    write_manifest(scm.parent / "manifest.json", manifest)
    result = CliRunner().invoke(app, ["apply", str(SPECS / "smoke.toml"), "--registry", str(root),
                                      "--set", "expert.sigma_y=2.0"])  # the expert stage reads it
    _clean(result)
    assert result.exit_code == 2, result.output
    assert "scm.eqx: cannot be read back" in result.output and "--force" in result.output


def test_a_checkpoint_of_another_model_layout_is_set_aside_not_a_crash(tmp_path):
    """Code that changes a model's layout without changing its spec leaves the stage hash alone:
    the old run's checkpoints must not crash the resume (it was an `internal error:`), nor be
    pruned in place of the fresh run's own ones."""
    import jax.numpy as jnp

    from engine.train import checkpoint

    old = {"w": jnp.zeros((64, 84))}
    checkpoint.save(tmp_path, 5000, old)
    checkpoint.save(tmp_path, 5500, old)
    warnings = []
    like = {"w": jnp.zeros((64, 90))}
    assert checkpoint.latest(tmp_path, like, warn=warnings.append) is None
    assert len(warnings) == 2 and "another model layout" in warnings[0]
    assert checkpoint.list_checkpoints(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000005000.eqx.unusable", "ckpt-000005500.eqx.unusable"]
    checkpoint.save(tmp_path, 500, like)  # the fresh run's checkpoints are kept
    checkpoint.save(tmp_path, 1000, like)
    header, tree = checkpoint.latest(tmp_path, like)
    assert header["step"] == 1000 and tree["w"].shape == (64, 90)


def test_a_checkpoint_written_by_other_code_is_not_resumed(tmp_path):
    """A stage hash names the spec, not the code: a checkpoint from other code (same layout) must
    not be resumed, or the run mixes two programs' steps and matches neither (a shipped model's
    first steps came from an earlier version of a feature that way)."""
    import jax.numpy as jnp

    from engine.train import checkpoint

    like = {"w": jnp.zeros((3,))}
    ckpts = tmp_path / "ckpts"
    checkpoint.save(ckpts, 100, like, {"code": "other"})
    checkpoint.save(ckpts, 200, like)  # before fingerprints: unknown code
    warnings = []
    assert checkpoint.latest(ckpts, like, warn=warnings.append, code="mine") is None
    assert len(warnings) == 2 and all("written by other code" in w for w in warnings)
    assert checkpoint.list_checkpoints(ckpts) == []
    checkpoint.save(ckpts, 300, like, {"code": "mine"})
    assert checkpoint.latest(ckpts, like, code="mine")[0]["step"] == 300

    # the fingerprint follows the step's sources, not the rest of the engine
    src = tmp_path / "engine"
    for rel in ("models/m.py", "train/t.py", "report/r.py"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("x = 1\n")
    base = checkpoint.fingerprint_of(src)
    (src / "report/r.py").write_text("x = 2\n")
    assert checkpoint.fingerprint_of(src) == base
    (src / "models/m.py").write_text("x = 2\n")
    assert checkpoint.fingerprint_of(src) != base
    assert checkpoint.code_fingerprint() == checkpoint.fingerprint_of(Path(checkpoint.__file__).parents[1])
