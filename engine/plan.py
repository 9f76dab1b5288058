"""Spec + devices -> Plan: the stages with content hashes, batch math, and a budget estimate.

A stage's hash covers the spec slice it reads, the hashes of the stages it reads from, and the
engine version, so changing `train.steps` retrains but reuses the simulated data and the expert's
demonstrations. With `[stage] uses = "other"`, the train stage (and what it reads) is the other
spec's; apply builds it there first if it is not cached yet. With `data.mode = "online"` the
train stage reads the simulated graphs only (its validation set), never the expert or the
demonstrations, which then serve the evaluation alone.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from dataclasses import dataclass, field

from engine.evaluate.baselines import BASELINES
from engine.registry import StageDir, registry_root
from engine.spec.loader import SpecFile, sibling
from engine.train.cost import train_seconds

ENGINE_VERSION = "0.10.0"  # bump when stored artifacts change (format, or the data a seed gives)
STAGES = ("simulate", "expert", "demonstrations", "train", "evaluate")
# Bump a model kind's entry when its parameters or input features change: only the train
# stages of that kind are then recomputed (a cached model of the old layout would not load).
MODEL_VERSIONS = {"stats": 3, "avici": 3}  # 3: the LAPACK-free inverse (engine/models/spd.py); avici 2: the pairwise-moment edge head
# Bump a stage's entry when its files change layout: that stage and those reading it recompute,
# the ones before it (the expert's hours) stay cached. demonstrations 2: one .npy per field.
STAGE_FORMATS = {"demonstrations": 2}


class PlanError(Exception):
    """A spec that validates but cannot run here (batch vs devices, budgets)."""


# Keys added to a section after caches existed: at these defaults they hash as if absent, so
# adding them did not invalidate every cached stage.
_LATER_DEFAULTS = {"data": {"mode": "fixed"}, "train": {"curriculum": []}, "model": {"quadratic": False, "triplets": False, "additive": False, "edge_layers": 0}}


def _dump(section, name: str | None = None) -> object:
    if section is None:
        return None
    if isinstance(section, list):
        return [_dump(s) for s in section]
    out = section.model_dump(mode="json")
    for key, default in _LATER_DEFAULTS.get(name, {}).items():
        if out.get(key) == default:
            out.pop(key)
    return out


def _hash(stage: str, inputs: dict, upstream: list[str]) -> str:
    blob = json.dumps(
        {"stage": stage, "engine": ENGINE_VERSION, "inputs": inputs, "upstream": upstream},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PlannedStage:
    name: str
    hash: str
    owner: str  # the spec whose artifacts these are (differs for [stage] uses)
    upstream: tuple[str, ...]  # stage names this one reads

    def dir(self, root=None) -> StageDir:
        return StageDir(self.name, self.hash, root or registry_root())


def stage_hashes(spec_file: SpecFile) -> dict[str, PlannedStage]:
    """Every stage this spec runs, in order, keyed by name (upstream specs resolved)."""
    spec = spec_file.spec
    out: dict[str, PlannedStage] = {}
    seed = spec.seed

    def add(name, inputs, upstream, owner=spec.name):
        h = _hash(name, inputs, [out[u].hash for u in upstream])
        out[name] = PlannedStage(name, h, owner, tuple(upstream))

    add("simulate", {"seed": seed, "scm": _dump(spec.scm), "n_graphs": spec.data.n_graphs}, [])
    add("expert", {"seed": seed, "expert": _dump(spec.expert)}, ["simulate"])
    add("demonstrations", {"seed": seed, "data": _dump(spec.data, "data"),
                           "format": STAGE_FORMATS["demonstrations"]}, ["expert"])
    if spec.trains:
        inputs = {"seed": seed, "model": _dump(spec.model, "model"), "loss": _dump(spec.loss), "train": _dump(spec.train, "train")}
        if spec.model.kind in MODEL_VERSIONS:
            inputs["model_version"] = MODEL_VERSIONS[spec.model.kind]
        if spec.data.mode == "online":
            # Simulated training data; validation graphs from the simulate stage, true labels.
            inputs.update(data=_dump(spec.data, "data"), scm=_dump(spec.scm))
            add("train", inputs, ["simulate"])
        else:
            add("train", inputs, ["demonstrations"])
        model_owner = spec.name
    else:
        upstream = stage_hashes(sibling(spec_file, spec.stage.uses))
        out["train"] = upstream["train"]
        model_owner = upstream["train"].owner
    evaluate_reads = ["demonstrations", "train"]
    for st in spec.evaluation_stages():
        if own_split(spec, st):
            continue
        sim, exp = f"simulate.{st.name}", f"expert.{st.name}"
        add(sim, {"seed": st.seed, "scm": _dump(st.scm or spec.scm), "n_graphs": stage_graphs(spec, st)}, [])
        add(exp, {"seed": st.seed, "expert": _dump(st.expert), "observational": st.observational}, [sim])
        evaluate_reads.append(exp)
    for name in spec.evaluation.models:  # other specs' models, evaluated beside this one's
        out[f"train.{name}"] = stage_hashes(sibling(spec_file, name))["train"]
        evaluate_reads.append(f"train.{name}")
    evaluate_reads += _optimize_stages(spec_file, add, out)
    add(
        "evaluate",
        {"seed": seed, "evaluation": _dump(spec.evaluation), "model_from": model_owner},
        evaluate_reads,
    )
    return out


def _optimize_stages(spec_file, add, out) -> list[str]:
    """[policy] and [optimize]: the policy's training (reading the model it believes, if any),
    then per problem its simulated SCMs and one stage running every strategy on them."""
    spec = spec_file.spec
    if spec.optimize is None:
        return []
    opt = spec.optimize
    models = []
    for name in opt.models():
        if name is None:
            models.append("train")
        else:
            if f"train.{name}" not in out:
                out[f"train.{name}"] = stage_hashes(sibling(spec_file, name))["train"]
            models.append(f"train.{name}")
    if spec.policy is not None:
        pol = spec.policy
        add("policy", {"seed": spec.seed, "policy": _dump(pol), "scm": _dump(pol.scm or spec.scm),
                       "n_trials": pol.n_trials or opt.n_trials},
            ["train"] if pol.surrogate == "model" else [])
    reads = []
    for p in spec.optimize_problems():
        sim = f"simulate.{p.name}"
        add(sim, {"seed": p.seed, "scm": _dump(p.scm), "n_graphs": p.n_graphs}, [])
        upstream = [sim] + models + (["policy"] if opt.uses_policy() else [])
        add(f"optimize.{p.name}", {"seed": p.seed, "n_trials": opt.n_trials, "expert": _dump(spec.expert),
                                   "strategies": _dump(opt.strategies), "optimum": _dump(opt.optimum)},
            upstream)
        reads.append(f"optimize.{p.name}")
    return reads


def stage_graphs(spec, stage) -> int:
    """An evaluation stage's number of graphs (default: as many as the held-out split has)."""
    from engine.spec.data import split_counts

    return stage.n_graphs or split_counts(spec.data.n_graphs, spec.data.split.model_dump())["heldout"]


def own_split(spec, stage) -> bool:
    """Whether an evaluation stage is this spec's own held-out split (no graphs of its own)."""
    return stage.scm is None and stage.n_graphs is None and not stage.observational \
        and stage.expert == spec.expert


# --------------------------------------------------------------------------- workers
RAY_CPUS_ENV = "ACBO_RAY_CPUS"  # the Ray cluster's CPUs `acbo plan` prices a ray spec at
RAY_PRICE_CPUS = 100  # ... when neither that, --ray-cpus nor a reachable RAY_ADDRESS says


@dataclass(frozen=True)
class Workers:
    """How many graphs (or episodes) run at once: worker processes, or Ray CPUs (one task each)."""

    n: int
    backend: str  # "local" | "ray"
    note: str  # where n comes from, for the plan's caption
    assumed: bool = False  # a pricing assumption, not what this machine would run


def local_workers() -> int:
    """The worker processes of the expert and optimize stages on this machine (one per core, at
    most 8; engine/stages/expert.py and optimize.py)."""
    return min(os.cpu_count() or 1, 8)


@functools.lru_cache(maxsize=4)
def ray_cluster_cpus(address: str) -> int | None:
    """The CPUs of the Ray cluster at `address` (ray.cluster_resources), or None where Ray is not
    installed or the cluster does not answer. Connects once per process (about a second)."""
    try:
        import ray
    except ImportError:
        return None
    try:
        ours = not ray.is_initialized()
        if ours:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        try:
            return int(ray.cluster_resources().get("CPU", 0)) or None
        finally:
            if ours:
                ray.shutdown()
    except Exception:  # noqa: BLE001 - unreachable, refused, version mismatch: not known
        return None


def _env_ray_cpus() -> int | None:
    value = os.environ.get(RAY_CPUS_ENV)
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise PlanError(f"{RAY_CPUS_ENV}={value!r}: not a positive number of CPUs")
    return n


def expert_workers(hardware, ray_cpus: int | None = None, pricing: bool = False) -> Workers:
    """The one worker count of the per-graph stages (expert, and [optimize]'s episodes).

    local: `local_workers()`. ray: `ray_cpus` if given; with `pricing` (`acbo plan`) then
    $ACBO_RAY_CPUS; then the CPUs of the cluster at $RAY_ADDRESS; where none is known, `pricing`
    assumes RAY_PRICE_CPUS (the spec is meant for a cluster: its price per 100 CPUs) while a run
    (`apply`) counts the local Ray instance it would start, as the Ray backend does.
    """
    n = local_workers()
    if hardware.backend != "ray":
        return Workers(n, "local", f"{n} local worker processes")
    if ray_cpus is None and pricing:
        ray_cpus = _env_ray_cpus()
    if ray_cpus is not None:
        return Workers(ray_cpus, "ray", f"{ray_cpus} Ray CPUs assumed", assumed=True)
    address = os.environ.get("RAY_ADDRESS")
    if address:
        cpus = ray_cluster_cpus(address)
        if cpus:
            return Workers(cpus, "ray", f"{cpus} CPUs of the Ray cluster at {address}")
        why = f"the Ray cluster at {address} did not answer"
    else:
        why = "RAY_ADDRESS is not set"
    if pricing:
        return Workers(RAY_PRICE_CPUS, "ray",
                       f"{RAY_PRICE_CPUS} Ray CPUs assumed ({why}; --ray-cpus N or {RAY_CPUS_ENV}=N "
                       f"prices another size; `acbo apply` here would start a local Ray instance "
                       f"of {n} CPUs)", assumed=True)
    return Workers(n, "ray", f"a local Ray instance of {n} CPUs ({why})")


@dataclass
class Plan:
    spec_file: SpecFile
    stages: dict[str, PlannedStage]
    devices: list[str]
    global_batch: int | None
    per_device_batch: int | None
    estimate_s: dict[str, float] = field(default_factory=dict)
    estimate_memory_gb: float = 0.0
    workers: Workers | None = None
    cpu_hours: dict[str, float] = field(default_factory=dict)  # per-graph stages' core-hours

    @property
    def spec(self):
        return self.spec_file.spec

    def cached(self, name: str, root=None) -> bool:
        return self.stages[name].dir(root).done

    @property
    def total_estimate_s(self) -> float:
        return sum(self.estimate_s.values())

    @property
    def total_cpu_hours(self) -> float:
        return sum(self.cpu_hours.values())

    @functools.cached_property
    def storage_bytes(self) -> dict[str, int]:
        """Bytes each of this spec's stages writes (not other specs' stages it reads); computed
        on first use (it traces the simulator's shapes), so `apply` does not pay for it."""
        from engine.storage import storage_estimates

        return storage_estimates(self.spec_file, self.stages)

    @property
    def total_storage_bytes(self) -> int:
        return sum(self.storage_bytes.values())

    def over_budget(self) -> list[str]:
        """What exceeds [hardware]'s budgets (empty: the plan fits)."""
        hw, out = self.spec.hardware, []
        if self.total_estimate_s > hw.max_wall_minutes * 60:
            slow = [n for n in self.cpu_hours if self.estimate_s.get(n, 0) > 0.25 * self.total_estimate_s]
            why = f", with the per-graph stages on {self.workers.note}" if slow and self.workers else ""
            out.append(f"estimated {self.total_estimate_s / 60:.1f} min exceeds "
                       f"hardware.max_wall_minutes = {hw.max_wall_minutes:g}{why}; raise the budget "
                       "or shrink the spec")
        if self.estimate_memory_gb > hw.max_memory_gb:
            out.append(f"estimated {self.estimate_memory_gb:.2f} GB exceeds hardware.max_memory_gb = "
                       f"{hw.max_memory_gb:g}")
        return out


def _estimates(spec, n_devices: int, uses_spec=None, workers: int = 2
               ) -> tuple[dict[str, float], float]:
    """Rough seconds per stage and peak memory (GB), from constants measured on a 2-core CPU.

    They are deliberately simple (linear in the work) and conservative; `acbo plan` prints them
    so a spec that cannot fit its [hardware] budget is refused before it starts.
    """
    d = spec.scm.max_nodes
    n_graphs = spec.data.n_graphs
    n_rows = spec.scm.n_obs + spec.scm.n_int
    est = {
        "simulate": 2.0 + 2e-8 * n_graphs * n_rows * d * d,
        "expert": _per_graph_wall(n_graphs, expert_graph_seconds(spec.expert, spec.scm.n_obs, d), workers),
        "demonstrations": 0.5 + 1e-3 * n_graphs,
    }
    train_spec = spec if spec.trains else uses_spec
    mem = 0.5
    if spec.trains:
        # compile (avici's grows with its layers and rows: 6-36 s measured) + the steps (each
        # simulating its batch in online mode)
        compile_s = 15.0 + (5.0 * spec.model.layers if spec.model.kind == "avici" else 0.0)
        est["train"] = compile_s + train_seconds(spec, n_devices)
    est.update(_optimize_estimates(spec, workers))
    if train_spec is not None:
        dim = train_spec.model.dim
        est.update(_evaluation_estimates(spec, workers))
        mem += 4 * train_spec.train.batch_size * n_rows * d * 16 / 1e9 / n_devices
        mem += 4 * 4 * dim * dim * 20 / 1e9
    mem += 4 * n_graphs * n_rows * d * 3 / 1e9
    return est, mem


def expert_graph_seconds(expert, n_obs: int, d: int) -> float:
    """One core's seconds for one graph: the doubly-robust prior dominates (measured ~5 s at
    200 rows, 10 bootstraps, 3-50 nodes: its networks' cost hardly depends on d), then ~0.05 s a
    trial; the uniform priors' exact posterior is milliseconds."""
    prior = getattr(expert, "prior", None)
    seconds = 0.01
    if prior is not None and prior.kind == "doubly_robust":
        per_net = 0.5 * (n_obs / 200) * (prior.max_epochs / 100) * (prior.hidden / 200)
        seconds += per_net * prior.n_bootstrap * (1 if prior.mode == "joint" else d)
    return seconds + 0.05 * getattr(expert, "n_trials", 0)


def _per_graph_wall(n: int, core_seconds: float, workers: int, start: float = 20.0) -> float:
    """Wall seconds of `n` graphs of `core_seconds` each on `workers` at once (workers start and
    compile: `start`; the last round may be partly idle)."""
    return start + math.ceil(n / max(workers, 1)) * core_seconds if n else 0.0


def _baseline_seconds(name: str, scm, limit: float) -> float:
    """One graph of the stage's distribution on average: its sizes by their weights (a graph
    file's own size), each 0 where the baseline does not take graphs that large (exact_dp runs on
    the <= 20-variable graphs of a 5-50 range only; priced at the largest, it was priced at 0)
    and at most `limit`, where a run is stopped."""
    from_files = all(g.kind == "from_file" for g in scm.graphs)
    sizes, weights = ([scm.max_nodes], [1.0]) if from_files else (scm.sizes, scm.size_weights)
    b = BASELINES[name]
    return sum(w * (min(b.seconds(d), limit) if b.takes(d) else 0.0) for d, w in zip(sizes, weights)) / sum(weights)


def _evaluation_estimates(spec, workers: int = 2) -> dict[str, float]:
    """Each evaluation stage's own simulation and expert runs (`workers` at once, a compile
    each), its baselines, and its interleaved timing; `evaluate` sums what runs in-process."""
    est: dict[str, float] = {}
    evaluate = 10.0
    for st in spec.evaluation_stages():
        scm = st.scm or spec.scm
        d = scm.max_nodes
        n = stage_graphs(spec, st)  # the held-out split's size for this spec's own split
        prior_only = (st.expert.model_copy(update={"n_trials": 0}) if hasattr(st.expert, "n_trials")
                      else st.expert)
        if not own_split(spec, st):
            est[f"simulate.{st.name}"] = 2.0 + 2e-8 * n * (scm.n_obs + scm.n_int) * d * d
            runs = prior_only if st.observational else st.expert  # observational: no trials
            est[f"expert.{st.name}"] = _per_graph_wall(n, expert_graph_seconds(runs, scm.n_obs, d), workers)
        prior_s = expert_graph_seconds(prior_only, scm.n_obs, d)
        limit = spec.evaluation.baseline_seconds
        evaluate += 5.0 + n * sum(_baseline_seconds(b, scm, limit) for b in st.baselines)
        evaluate += min(st.timed_graphs, n) * spec.evaluation.timing_repeats * prior_s
    est["evaluate"] = evaluate
    return est


# per-trial seconds of one episode on one core (engine.cbo.episode), from phase4_integration's
# episodes at 10-20 nodes (measured at a load of ~2 per core, halved): EI's GP tables and ascent
# over the belief's sets ~0.5 s, a policy's pick and the model's forward pass ~0.1 s, random ~0
_TRIAL_SECONDS = {"ei": 0.5, "policy": 0.1, "random": 0.002}


def _optimize_estimates(spec, workers: int = 2) -> dict[str, float]:
    if spec.optimize is None:
        return {}
    est: dict[str, float] = {}
    if spec.policy is not None:
        pol = spec.policy
        # one step: batch_graphs x group_size simulated outcomes and beliefs; phase4_integration's
        # 300 steps of 16 x 8 on 5-12 nodes took 93 s at a load of ~2 per core; plus its compile
        est["policy"] = 30.0 + pol.steps * 1.2e-3 * pol.batch_graphs * pol.group_size
    for p in spec.optimize_problems():
        d = p.scm.max_nodes
        est[f"simulate.{p.name}"] = 2.0 + 2e-8 * p.n_graphs * (p.scm.n_obs + p.scm.n_int) * d * d
        jobs = p.n_graphs * len(spec.optimize.strategies)  # one episode a job
        est[f"optimize.{p.name}"] = 30.0 + p.n_graphs * _episode_seconds(spec, p) / min(workers, max(jobs, 1))
    return est


def _episode_seconds(spec, problem) -> float:
    """One core's seconds for one graph of an [optimize] problem: every strategy's episode."""
    opt, per_graph = spec.optimize, 0.0
    for s in opt.strategies:
        per_graph += opt.n_trials * _TRIAL_SECONDS[s.acquisition.kind]
        if s.surrogate.kind == "expert":
            per_graph += expert_graph_seconds(spec.expert.model_copy(update={"n_trials": 0}),
                                              problem.scm.n_obs, problem.scm.max_nodes)
    return per_graph


def cpu_hours(spec) -> dict[str, float]:
    """Core-hours of the per-graph stages (graphs x one core's seconds per graph / 3600): what a
    cluster bills, whatever the worker count. The other stages run in one process."""
    d = spec.scm.max_nodes
    out = {"expert": spec.data.n_graphs * expert_graph_seconds(spec.expert, spec.scm.n_obs, d) / 3600}
    for st in spec.evaluation_stages():
        if not own_split(spec, st):
            scm = st.scm or spec.scm
            runs = (st.expert.model_copy(update={"n_trials": 0})
                    if st.observational and hasattr(st.expert, "n_trials") else st.expert)
            out[f"expert.{st.name}"] = (stage_graphs(spec, st)
                                        * expert_graph_seconds(runs, scm.n_obs, scm.max_nodes) / 3600)
    for p in spec.optimize_problems():
        out[f"optimize.{p.name}"] = p.n_graphs * _episode_seconds(spec, p) / 3600
    return out


def make_plan(spec_file: SpecFile, devices: list | None = None, ray_cpus: int | None = None,
              pricing: bool = False, check_budget: bool = True) -> Plan:
    """The plan for `spec_file` on `devices` (default: what [hardware] selects here), its per-graph
    stages on `expert_workers(hardware, ray_cpus, pricing)`. With `check_budget` a plan over its
    [hardware] budgets is refused (PlanError); without, `Plan.over_budget()` says what exceeds
    them (`acbo plan` prints the price first)."""
    spec = spec_file.spec
    if devices is None:
        from engine.train.parallel import select_devices

        try:
            devices = select_devices(spec.hardware.devices)
        except ValueError as exc:
            raise PlanError(str(exc)) from None
    stages = stage_hashes(spec_file)
    n_dev = len(devices)
    global_batch = per_device = None
    if spec.trains:
        global_batch = spec.train.batch_size
        micro = global_batch // spec.train.accumulate  # the spec checks that this divides
        if micro % n_dev:
            step = n_dev * spec.train.accumulate
            raise PlanError(
                f"train.batch_size = {global_batch} (micro-batches of {micro} with "
                f"accumulate = {spec.train.accumulate}) does not divide over {n_dev} devices; "
                f"use a multiple of {step} (e.g. {((global_batch // step) + 1) * step})"
            )
        per_device = micro // n_dev
    uses = sibling(spec_file, spec.stage.uses).spec if spec.stage.uses else None
    workers = expert_workers(spec.hardware, ray_cpus, pricing)
    est, mem = _estimates(spec, n_dev, uses, workers.n)
    hours = {name: h for name, h in cpu_hours(spec).items() if name in est}
    plan = Plan(spec_file, stages, [str(d) for d in devices], global_batch, per_device, est, mem,
                workers, hours)
    problems = plan.over_budget() if check_budget else []
    if problems:
        raise PlanError("; ".join(problems))
    return plan
