"""apply / gate: run a plan's stages in order, reusing cached ones, then record the run.

When every stage is cached and an earlier, intact, complete run recorded exactly this plan (the
same resolved spec and stage hashes), apply returns that run instead of adding a duplicate run
folder; otherwise it says why it records a new one.

Stages read their inputs from the registry only, so any of them can be resumed or rerun alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from engine.gates import evaluate_gates
from engine.plan import STAGES, Plan, make_plan, stage_graphs
from engine.runs import Run
from engine.spec.loader import SpecFile, sibling
from engine.stages import demonstrations, evaluate, expert, simulate, train
from engine.stages.context import Progress, StageContext
from engine.train.parallel import is_lead, multihost

RUNNERS = {
    "simulate": simulate.run,
    "expert": expert.run,
    "demonstrations": demonstrations.run,
    "train": train.run,
}


def _runner(name: str, ctx: StageContext):
    """The runner of stage `name`; `simulate.<stage>` and `expert.<stage>` are an evaluation
    stage's own graphs and expert runs."""
    if name in RUNNERS:
        return RUNNERS[name]
    if name == "policy":
        from engine.stages import policy

        return policy.run
    kind, stage_name = name.split(".", 1)
    problem = next((p for p in ctx.spec.optimize_problems() if p.name == stage_name), None)
    if problem is not None:
        from engine.stages import optimize

        if kind == "simulate":
            return lambda c: simulate.run(c, name, problem.scm, problem.n_graphs, problem.seed)
        return lambda c: optimize.run(c, problem)
    st = next(s for s in ctx.spec.evaluation_stages() if s.name == stage_name)
    if kind == "simulate":
        return lambda c: simulate.run(c, name, st.scm or c.spec.scm, stage_graphs(c.spec, st), st.seed)
    return lambda c: expert.run(c, name, st)


class Refused(Exception):
    """apply will not start: a required spec's gate is not GO, or the run cannot be split so."""


@dataclass
class Outcome:
    run_dir: Path
    evaluation: dict | None
    gates: dict | None
    reused: list[str]
    computed: list[str]
    new_run: bool = True  # False: every stage was cached and an earlier run of them was reused
    why: str = ""  # why a new run folder was made although every stage was cached, or none was


def _finished_run(plan: Plan, root: Path, command: str) -> tuple[Path | None, str]:
    """An earlier complete, intact run of exactly this plan (the same resolved spec and the same
    stage hashes) by the same command (`apply` or `gate`: the lock says which), newest first,
    when every stage of the plan is cached; else (None, why a new run folder is made), with
    why = "" when some stage is not cached (nothing to explain). Every stage is verified first,
    as a cached stage always is: damage is named, with --force, not papered over."""
    from engine.registry import CorruptArtifact
    from engine.runs import RunFolder, run_status, spec_hash

    if not all(stage.dir(root).done for stage in plan.stages.values()):
        return None, ""
    spec = plan.spec
    want = {"spec_hash": spec_hash(spec), "stage_hashes": {n: s.hash for n, s in plan.stages.items()},
            "command": command}
    need = ["evaluation.json", "evaluation.npz"] + (["gates.json"] if spec.gates else [])
    runs = sorted((Path(root) / spec.name).glob("*/lock.json"), reverse=True)
    why = f"no earlier run of {spec.name} in {root}"
    for i, lock_path in enumerate(runs):
        try:
            folder = RunFolder(lock_path.parent)
            lock = folder.read_json("lock.json")
            if any(lock.get(k) != v for k, v in want.items()):
                latest = f"the latest run ({lock_path.parent.name})"
                why = why if i else (
                    f"{latest} ran another version of the spec" if lock.get("spec_hash") != want["spec_hash"]
                    else f"{latest} has other stages" if lock.get("stage_hashes") != want["stage_hashes"]
                    else f"{latest} was recorded by `acbo {lock.get('command')}`; `acbo {command}` records its own")
                continue
            if run_status(lock) != "complete" or not all(folder.has(n) for n in need):
                why = why if i else f"the latest run ({lock_path.parent.name}) is {run_status(lock)}"
                continue
            folder.verify()
        except CorruptArtifact as exc:
            why = why if i else f"the latest run is damaged ({exc})"
            continue
        for stage in plan.stages.values():
            stage.dir(root).verify()
        return folder.path, ""
    return None, why


def _reuse(run_dir: Path, plan: Plan, progress: Progress) -> Outcome:
    """The Outcome of an earlier run whose every stage is cached (gates re-judged from its
    verified evaluation record, so a changed gate rule shows)."""
    from engine.runs import RunFolder

    evaluation = RunFolder(run_dir).evaluation()
    gates = evaluate_gates(plan.spec, evaluation) if plan.spec.gates else None
    progress.log(f"every stage is cached and run {run_dir} recorded them: reusing it "
                 "(no new run folder; --force recomputes)")
    return Outcome(run_dir, evaluation, gates, list(plan.stages), [], new_run=False)


def _follow(plan: Plan, ctx: StageContext, command: str) -> Outcome:
    """A process other than the lead in a multi-host run (every process runs the same apply on
    one shared registry): it trains with the lead, which builds every other stage under its
    lock and records the run, then returns that run. Stages before training are waited for
    under their locks; the train stage's lock is the lead's, so this process joins training
    without it (the lead alone writes its files, engine.stages.train)."""
    spec = plan.spec
    reused: list[str] = []
    computed: list[str] = []
    _ensure(plan, ["simulate", "expert", "demonstrations"], ctx, False, reused, computed)
    if spec.trains and not ctx.dir("train").done:
        train.run(ctx)
    while True:  # the lead evaluates and records the run
        earlier, _ = _finished_run(plan, ctx.root, command)
        if earlier is not None:
            return _reuse(earlier, plan, ctx.progress)
        if ctx.deadline is not None and time.time() > ctx.deadline:
            raise TimeoutError("the lead process recorded no run within hardware.max_wall_minutes")
        time.sleep(2)


def check_requirements(spec_file: SpecFile, root: Path) -> None:
    """Every spec in [stage] requires must have a GO verdict for its current content."""
    for name in spec_file.spec.stage.requires:
        other = sibling(spec_file, name)
        verdict = current_verdict(other, root)
        if verdict is None:
            raise Refused(
                f"{spec_file.spec.name} requires {name}'s gate to be GO, but {name} has not been "
                f"evaluated in its current form; run `acbo gate {other.path}` first"
            )
        if verdict.verdict != "GO":
            failed = ", ".join(g.name for g in verdict.gates if g.verdict != "GO") or "no gates"
            raise Refused(
                f"{spec_file.spec.name} requires {name}'s gate to be GO; it is {verdict.verdict} "
                f"(not GO: {failed}). See `acbo gate {other.path}`"
            )


def current_verdict(spec_file: SpecFile, root: Path):
    """The gate Verdict of `spec_file` from its cached evaluation, or None if not evaluated."""
    plan = make_plan(spec_file)
    stage = plan.stages["evaluate"].dir(root)
    if not stage.done:
        return None
    return evaluate_gates(spec_file.spec, evaluate.load(stage))


def _ensure(plan: Plan, names, ctx: StageContext, force: bool, reused: list, computed: list) -> None:
    """Run the stages `names` of `plan` that are not cached (all of them with `force`), each
    under its lock: a concurrent apply of the same stage waits, then reuses what this one built."""
    for name in names:
        stage_dir = ctx.dir(name)
        with stage_dir.building(ctx.progress.log):
            if stage_dir.done and not force:
                stage_dir.verify()
                reused.append(name)
                ctx.progress.log(f"{name}: cached ({stage_dir.hash})")
                continue
            if force:
                stage_dir.remove()  # from scratch: no cached result, no checkpoint to resume
            started = time.perf_counter()
            _runner(name, ctx)(ctx)
            computed.append(name)
            ctx.progress.log(f"{name}: done in {time.perf_counter() - started:.1f} s ({stage_dir.hash})")


def apply(
    spec_file: SpecFile,
    root: Path,
    progress: Progress | None = None,
    force: bool = False,
    command: str = "apply",
) -> Outcome:
    """Run simulate -> expert -> demonstrations -> train -> evaluate; record the run."""
    progress = progress or Progress()
    check_requirements(spec_file, root)
    plan = make_plan(spec_file)
    spec = spec_file.spec
    why = ""
    if not force:  # a second apply of what is all cached: the run that recorded it, not a copy
        earlier, why = _finished_run(plan, Path(root), command)
        if earlier is not None:
            return _reuse(earlier, plan, progress)
        if why:
            progress.log(f"every stage is cached, but {why}: recording a new run")
    spec.hardware.build_backend()  # a backend that cannot run here (Ray missing) fails before any stage
    deadline = time.time() + spec.hardware.max_wall_minutes * 60
    ctx = StageContext(plan, Path(root), progress, deadline)
    if multihost():
        if spec.stage.uses or spec.evaluation.models or spec.optimize is not None:
            raise Refused(
                "a multi-host apply trains this spec's own model on every host; train the models of "
                "[stage] uses, evaluation.models and [policy] with their own specs first, or on one host")
        if not is_lead():
            return _follow(plan, ctx, command)
    run = Run(root, plan, command)
    reused: list[str] = []
    computed: list[str] = []
    try:
        # Models trained by other specs (`uses`, evaluation.models): built there if needed,
        # never --forced from here.
        optimize_models = [m for m in spec.optimize.models() if m] if spec.optimize else []
        for name in dict.fromkeys(filter(None, [spec.stage.uses, *spec.evaluation.models, *optimize_models])):
            trainer = evaluate.trained_spec(sibling(spec_file, name))
            other_plan = make_plan(trainer)
            other_ctx = StageContext(other_plan, Path(root), progress, deadline)
            _ensure(other_plan, STAGES[:4], other_ctx, False, reused, computed)
        # in plan order (the policy may read the model); other specs' models were built above
        _ensure(plan, [s for s in plan.stages if s != "evaluate" and (s != "train" or spec.trains)
                       and not (s.startswith("train.") and plan.stages[s].owner != spec.name)],
                ctx, force, reused, computed)
        owner = evaluate.trained_spec(spec_file).spec
        eval_dir = ctx.dir("evaluate")
        with eval_dir.building(ctx.progress.log):
            if eval_dir.done and not force:
                eval_dir.verify()
                evaluation = evaluate.load(eval_dir)
                reused.append("evaluate")
            else:
                eval_dir.remove()
                evaluation = evaluate.run(ctx, owner.model, owner)
                computed.append("evaluate")
        run.record_training(ctx.dir("train"))
        run.record("evaluation.json", evaluation.to_json())
        run.record_bytes("evaluation.npz", eval_dir.read_bytes("evaluation.npz"))
        gates = None
        if spec.gates:
            gates = evaluate_gates(spec, evaluation)
            run.record("gates.json", gates.to_json())
        run.lock["reused"], run.lock["computed"] = reused, computed
        run.finish("complete")
    except KeyboardInterrupt:
        run.finish("interrupted", "interrupted; the same command resumes from the last checkpoint")
        raise
    except BaseException as exc:
        run.finish("failed", str(exc))
        raise
    return Outcome(run.dir, evaluation, gates, reused, computed, why=why or ("--force" if force else ""))
