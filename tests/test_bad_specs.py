"""A corpus of bad specs, each refused by `acbo validate` with exit 2 and one exact line
`file:line: dotted.path: message`, never a traceback or an internal error.

Cases are small edits of specs/smoke.toml (as in test_spec.py, whose cases are not repeated
here). The expected line number is that of the line holding a marker in the edited text.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from engine.cli import app

ROOT = Path(__file__).resolve().parents[1]
SMOKE = (ROOT / "specs" / "smoke.toml").read_text()
SECRET = "hunter2"  # in graph files only: it must never reach the output
DIR = object()  # the spec path is a directory
FINITE = "must be a finite number"
F32 = "must fit in float32 (|x| <= 3.4028235e+38)"
NAME_HINT = ("a spec file beside this one, without a folder or '.toml' (e.g. \"phase2a\" for "
             "phase2a.toml)")


def edit(old: str | None, new: str, text: str = SMOKE) -> str:
    """`text` with its one occurrence of `old` replaced by `new` (appended when old is None)."""
    if old is None:
        return text + new
    assert text.count(old) == 1, f"{old!r} must occur once"
    return text.replace(old, new)


def drop_sections(*names: str, text: str = SMOKE) -> str:
    for name in names:
        text, n = re.subn(rf"(?ms)^\[{name}\]\n.*?(?=^\[|\Z)", "", text)
        assert n == 1
    return text


def line_of(text: str, marker: str) -> int:
    hits = [n for n, line in enumerate(text.splitlines(), 1) if marker in line]
    assert hits, marker
    return hits[-1]


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


OPT = 'log_every = 10\noptimizer = { kind = "adam", lr = %s }'
VALUE = 'value = { dist = "uniform", low = -5.0, high = 5.0 }'
SPLIT = "split = { train = 0.6, validation = 0.2, heldout = 0.2 }"
GATE_MIN = "min = 0.5"  # the auroc gate's bound (the speedup gate has min = 1.0)
ER = '[{ kind = "erdos_renyi", edges_per_node = 1.0 }]'
USES = drop_sections("model", "loss", "train") + '\n[stage]\nuses = "phase2a"\n'


def from_file(path: str) -> str:
    return edit(f"graphs = {ER}", f'graphs = [{{ kind = "from_file", path = "{path}" }}]')


def case(id, text, marker, message, sets=(), files=None):
    """One bad spec: `message` with {L} standing for "bad.toml:<line of marker>"."""
    return pytest.param(text, list(sets), marker, message, files or {}, id=id)


def setting(id, sets, message, text=SMOKE):
    """A bad --set on a good spec: the line names the override."""
    return case(id, text, None, f"--set {sets}: {message}", [sets])


CASES = [
    # ------------------------------------------------------------- non-finite numbers, [scm]
    case("nan-intervention-low", edit(VALUE, VALUE.replace("-5.0", "nan")), "value =",
         f"{{L}}: scm.interventions.value.low: {FINITE} (got nan)"),
    case("inf-intervention-high", edit(VALUE, VALUE.replace("high = 5.0", "high = inf")),
         "value =", f"{{L}}: scm.interventions.value.high: {FINITE} (got inf)"),
    case("neg-inf-rows-per-node", edit("rows_per_node = 2", "rows_per_node = -inf"), "rows_per",
         f"{{L}}: scm.interventions.rows_per_node: {FINITE} (got -inf)"),
    case("huge-n-obs", edit("n_obs = 60", "n_obs = 1e39"), "n_obs",
         f"{{L}}: scm.n_obs: {F32} (got 1e+39)"),
    case("inf-edges-per-node", edit("edges_per_node = 1.0", "edges_per_node = inf"), "graphs = [",
         f"{{L}}: scm.graphs.0.edges_per_node: {FINITE} (got inf)"),
    case("nan-graph-weight", edit("edges_per_node = 1.0", "edges_per_node = 1.0, weight = nan"),
         "graphs = [", f"{{L}}: scm.graphs.0.weight: {FINITE} (got nan)"),
    case("nan-mechanism-coef-low-on-its-own-line",
         edit("n_obs = 60", 'n_obs = 60\nmechanism = [\n  { kind = "tanh" },\n'
              '  { kind = "linear", coef = { dist = "uniform", low = nan, high = 1.0 } },\n]'),
         "low = nan", f"{{L}}: scm.mechanism.1.coef.low: {FINITE} (got nan)"),
    case("neg-inf-bias-of-a-single-mechanism-table",
         edit("n_obs = 60", 'n_obs = 60\nmechanism = { kind = "linear", bias = -inf }'),
         "mechanism =", f"{{L}}: scm.mechanism.bias: {FINITE} (got -inf)"),
    case("nan-noise-scale-in-array-of-tables",
         edit(None, '\n[[scm.noise]]\nkind = "gaussian"\nscale = nan\n'),
         "scale = nan", f"{{L}}: scm.noise.0.scale: {FINITE} (got nan)"),
    case("inf-size-weight", edit("n_nodes = { low = 3, high = 5 }",
                                 "n_nodes = { values = [3, 4], weights = [1.0, inf] }"),
         "n_nodes", f"{{L}}: scm.n_nodes.weights.1: {FINITE} (got inf)"),
    case("nan-in-choice-values",
         edit(VALUE, 'value = { dist = "choice", values = [1.0, nan] }'), "value =",
         f"{{L}}: scm.interventions.value.values.1: {FINITE} (got nan)"),
    case("inf-normal-std", edit(VALUE, 'value = { dist = "normal", std = inf }'), "value =",
         f"{{L}}: scm.interventions.value.std: {FINITE} (got inf)"),
    case("huge-negative-coef", edit("n_obs = 60", 'n_obs = 60\nmechanism = { kind = "tanh", '
                                    "amplitude = -3.5e38 }"),
         "mechanism =", f"{{L}}: scm.mechanism.amplitude: {F32} (got -3.5e+38)"),
    # ----------------------------------------------------------------------------- [expert]
    case("nan-sigma-y", edit('kind = "parent_scale"', 'kind = "parent_scale"\nsigma_y = nan'),
         "sigma_y", f"{{L}}: expert.sigma_y: {FINITE} (got nan)"),
    case("neg-inf-prune-threshold",
         edit('kind = "parent_scale"', 'kind = "parent_scale"\nprune_threshold = -inf'),
         "prune_threshold", f"{{L}}: expert.prune_threshold: {FINITE} (got -inf)"),
    case("inf-prior-max-parents", edit("max_parents = 2", "max_parents = inf"), "prior =",
         f"{{L}}: expert.prior.max_parents: {FINITE} (got inf)"),
    case("huge-sigma-theta",
         edit('kind = "parent_scale"', 'kind = "parent_scale"\nsigma_theta = 1e39'),
         "sigma_theta", f"{{L}}: expert.sigma_theta: {F32} (got 1e+39)"),
    # ------------------------------------------------------------------------------ [train]
    case("nan-learning-rate", edit("log_every = 10", OPT % "nan"), "optimizer =",
         f"{{L}}: train.optimizer.lr: {FINITE} (got nan)"),
    case("inf-adam-b1", edit("log_every = 10", 'log_every = 10\noptimizer = { kind = "adam", '
                                               "b1 = inf }"),
         "optimizer =", f"{{L}}: train.optimizer.b1: {FINITE} (got inf)"),
    case("nan-warmup-cosine-peak",
         edit("log_every = 10", OPT % '{ kind = "warmup_cosine", peak = nan }'), "optimizer =",
         f"{{L}}: train.optimizer.lr.peak: {FINITE} (got nan)"),
    case("nan-in-piecewise-values",
         edit("log_every = 10", OPT % '{ kind = "piecewise", values = [1e-3, nan], '
                                      "boundaries = [20] }"),
         "optimizer =", f"{{L}}: train.optimizer.lr.values.1: {FINITE} (got nan)"),
    case("inf-clip-norm", edit("steps = 40", "steps = 40\nclip_norm = inf"), "clip_norm",
         f"{{L}}: train.clip_norm: {FINITE} (got inf)"),
    case("nan-ema", edit("steps = 40", "steps = 40\nema = nan"), "ema =",
         f"{{L}}: train.ema: {FINITE} (got nan)"),
    case("nan-early-stopping-min-delta",
         edit("steps = 40", "steps = 40\nearly_stopping = { patience = 2, min_delta = nan }"),
         "early_stopping", f"{{L}}: train.early_stopping.min_delta: {FINITE} (got nan)"),
    case("neg-inf-dual-rate", edit("steps = 40", "steps = 40\ndual_rate = -inf"), "dual_rate",
         f"{{L}}: train.dual_rate: {FINITE} (got -inf)"),
    case("inf-steps", edit("steps = 40", "steps = inf"), "steps =",
         f"{{L}}: train.steps: {FINITE} (got inf)"),
    case("inf-in-curriculum-sizes",
         edit("[evaluation]", "[[train.curriculum]]\nsteps = 40\n"
              "n_nodes = { low = 3, high = inf }\n\n[evaluation]"),
         "n_nodes = { low = 3, high = inf", f"{{L}}: train.curriculum.0.n_nodes.high: {FINITE} "
         "(got inf)"),
    # ------------------------------------------------------------------------ [loss], [model]
    case("nan-pos-weight", edit('kind = "bce"', 'kind = "bce"\npos_weight = nan'), "pos_weight",
         f"{{L}}: loss.pos_weight: {FINITE} (got nan)"),
    case("inf-calibration-weight",
         edit('kind = "bce"', 'kind = "bce"\ncalibration_weight = inf'), "calibration_weight",
         f"{{L}}: loss.calibration_weight: {FINITE} (got inf)"),
    case("neg-inf-focal-gamma", edit('kind = "bce"', 'kind = "focal"\ngamma = -inf'), "gamma",
         f"{{L}}: loss.gamma: {FINITE} (got -inf)"),
    case("huge-model-dim", edit("dim = 16", "dim = 1e39"), "dim =",
         f"{{L}}: model.dim: {F32} (got 1e+39)"),
    case("heads-do-not-divide-dim", edit("dim = 16", "dim = 15"), "heads = 2",
         "{L}: model.heads: dim (15) must be a multiple of heads (2)"),
    case("nan-avici-dropout",
         edit('kind = "stats"\ndim = 16\nlayers = 1\nheads = 2',
              'kind = "avici"\ndropout = nan'), "dropout",
         f"{{L}}: model.dropout: {FINITE} (got nan)"),
    # -------------------------------------------------------------- [hardware], [evaluation]
    case("inf-wall-minutes", edit(None, "\n[hardware]\nmax_wall_minutes = inf\n"),
         "max_wall_minutes", f"{{L}}: hardware.max_wall_minutes: {FINITE} (got inf)"),
    case("nan-memory", edit(None, "\n[hardware]\nmax_memory_gb = nan\n"), "max_memory_gb",
         f"{{L}}: hardware.max_memory_gb: {FINITE} (got nan)"),
    case("inf-devices", edit(None, "\n[hardware]\ndevices = inf\n"), "devices",
         f"{{L}}: hardware.devices: {FINITE} (got inf)"),
    case("nan-threshold", edit("timing_repeats = 1", "timing_repeats = 1\nthreshold = nan"),
         "threshold", f"{{L}}: evaluation.threshold: {FINITE} (got nan)"),
    case("huge-timing-repeats", edit("timing_repeats = 1", "timing_repeats = 4e38"),
         "timing_repeats", f"{{L}}: evaluation.timing_repeats: {F32} (got 4e+38)"),
    # ------------------------------------------------------------------------------- gates
    case("nan-speedup-min", edit("min = 1.0", "min = nan"), "min = nan",
         f"{{L}}: gates.0.min: {FINITE} (got nan)"),
    case("inf-metric-max", edit(GATE_MIN, "max = inf"), "max = inf",
         f"{{L}}: gates.1.max: {FINITE} (got inf)"),
    case("nan-accuracy-drop-max",
         edit(None, '\n[[gates]]\nmetric = "f1"\nvs = "expert"\nmax = nan\n'), "max = nan",
         f"{{L}}: gates.2.max: {FINITE} (got nan)"),
    # ------------------------------------------------------------------------------ [data]
    case("nan-split-fraction", edit(SPLIT, SPLIT.replace("validation = 0.2", "validation = nan")),
         "split =", f"{{L}}: data.split.validation: {FINITE} (got nan)"),
    case("inf-n-graphs", edit("n_graphs = 30", "n_graphs = inf"), "n_graphs",
         f"{{L}}: data.n_graphs: {FINITE} (got inf)"),
    case("neg-inf-demos-per-graph", edit("demos_per_graph = 2", "demos_per_graph = -inf"),
         "demos_per_graph", f"{{L}}: data.demos_per_graph: {FINITE} (got -inf)"),
    case("nan-seed", edit("seed = 0", "seed = nan"), "seed =",
         f"{{L}}: seed: {FINITE} (got nan)"),
    # ---------------------------------------------------------------------- through --set
    setting("set-nan-steps", "train.steps=nan", f"train.steps: {FINITE} (got nan)"),
    setting("set-inf-n-obs", "scm.n_obs=inf", f"scm.n_obs: {FINITE} (got inf)"),
    setting("set-neg-inf-wall-minutes", "hardware.max_wall_minutes=-inf",
            f"hardware.max_wall_minutes: {FINITE} (got -inf)"),
    setting("set-nan-in-an-inline-table", 'train.optimizer={ kind = "adam", lr = nan }',
            f"train.optimizer.lr: {FINITE} (got nan)"),
    setting("set-huge-threshold", "evaluation.threshold=1e39",
            f"evaluation.threshold: {F32} (got 1e+39)"),
    setting("set-nan-split", "data.split.heldout=nan", f"data.split.heldout: {FINITE} (got nan)"),
    setting("set-nan-in-an-array-of-tables", "gates.0.min=nan", f"gates.0.min: {FINITE} (got nan)"),
    setting("set-past-the-end-of-an-array", "gates.5.min=1", "'gates' has 2 element(s), no '5'"),
    # ---------------------------------------------------------------- contradictory bounds
    case("metric-gate-min-above-max", edit(GATE_MIN, "min = 0.8\nmax = 0.6"), "min = 0.8",
         "{L}: gates.1.min: min (0.8) must be <= max (0.6): no value can pass"),
    case("metric-gate-without-a-bound", edit(GATE_MIN + "\n", ""), "[[gates]]",
         "{L}: gates.1: a gate needs min and/or max (without a bound it always passes)"),
    case("metric-gate-min-above-one", edit(GATE_MIN, "min = 1.5"), "min = 1.5",
         "{L}: gates.1.min: auroc is at most 1, so min = 1.5 can never pass"),
    case("metric-gate-negative-max", edit(GATE_MIN, "max = -0.1"), "max = -0.1",
         "{L}: gates.1.max: auroc is never negative, so max = -0.1 can never pass"),
    # ------------------------------------ found by tests/test_fuzz_specs.py and apply probes
    case("n-nodes-high-huge", edit("high = 5 }", "high = 9223372036854775807 }"), "n_nodes",
         "{L}: scm.n_nodes.high: Input should be less than or equal to 1000 "
         "(got 9223372036854775807)"),
    case("n-nodes-choice-huge", edit("n_nodes = { low = 3, high = 5 }",
                                     "n_nodes = { values = [3, 100000] }"), "n_nodes",
         "{L}: scm.n_nodes.values.1: Input should be less than or equal to 1000 (got 100000)"),
    setting("set-n-nodes-huge", "scm.n_nodes=2000000000",
            "scm.n_nodes: Input should be less than or equal to 1000 (got 2000000000)"),
    case("n-nodes-only-two", edit("n_nodes = { low = 3, high = 5 }",
                                  "n_nodes = { low = 2, high = 2 }").replace(
             "edges_per_node = 1.0", "edges_per_node = 0.5"), "n_nodes",
         "{L}: scm.n_nodes: graphs of 2 nodes leave the target one candidate, which is always its "
         "parent (the target has at least one): nothing to discover and AUROC is undefined; use "
         "n_nodes >= 3"),
    case("seed-beyond-32-bits", edit("seed = 0", "seed = 4294967296"), "seed =",
         "{L}: seed: must be at most 2**32 - 1 = 4294967295: larger seeds wrap onto smaller ones "
         "(got 4294967296)"),
    case("seed-beyond-64-bits", edit("seed = 0", "seed = 1180591620717411303424"), "seed =",
         "{L}: seed: must be at most 2**32 - 1 = 4294967295: larger seeds wrap onto smaller ones "
         "(got 1180591620717411303424)"),
    case("metric-gate-on-map-f1", edit('metric = "auroc"', 'metric = "map_f1"'), "map_f1",
         "{L}: gates.1.metric: the model side has no map_f1: it is measured for expert only (F1 "
         "of the expert's most probable parent set)"),
    case("relative-gate-vs-a-side-without-map-f1",
         edit(None, '\n[[gates]]\nmetric = "map_f1"\nside = "expert"\nvs = "model"\nmax = 0.2\n'),
         'vs = "model"', "{L}: gates.2.vs: the model side has no map_f1: it is measured for "
         "expert only (F1 of the expert's most probable parent set)"),
    case("uniform-low-above-high", edit(VALUE, VALUE.replace("-5.0", "6.0")), "value =",
         "{L}: scm.interventions.value: high (5.0) must be >= low (6.0)"),
    case("size-range-low-above-high",
         edit("n_nodes = { low = 3, high = 5 }", "n_nodes = { low = 6, high = 5 }"), "n_nodes",
         "{L}: scm.n_nodes: high (5) must be >= low (6)"),
    case("warmup-cosine-end-above-peak",
         edit("log_every = 10", OPT % '{ kind = "warmup_cosine", peak = 1e-3, end = 1e-2 }'),
         "optimizer =", "{L}: train.optimizer.lr.end: end (0.01) must be <= peak (0.001): the "
         "cosine decays from peak to end"),
    case("warmup-cosine-decay-before-warmup",
         edit("log_every = 10", OPT % '{ kind = "warmup_cosine", peak = 1e-3, warmup = 30, '
                                      "decay_steps = 10 }"),
         "optimizer =", "{L}: train.optimizer.lr.decay_steps: decay_steps (10) must be >= warmup "
         "(30): the decay follows the warm-up"),
    # ------------------------------------------------------------------------ empty splits
    case("one-graph", edit("n_graphs = 30", "n_graphs = 1"), "n_graphs",
         "{L}: data.n_graphs: n_graphs = 1 splits into train 1, validation 0, heldout 0 graphs: "
         "every spec is evaluated on its held-out graphs, so at least one is needed (raise "
         "data.split.heldout or data.n_graphs)"),
    case("heldout-zero", edit(SPLIT, "split = { train = 0.8, validation = 0.2, heldout = 0.0 }"),
         "split =", "{L}: data.split.heldout: n_graphs = 30 splits into train 24, validation 6, "
         "heldout 0 graphs: every spec is evaluated on its held-out graphs, so at least one is "
         "needed (raise data.split.heldout or data.n_graphs)"),
    case("fixed-mode-without-training-graphs",
         edit(SPLIT, "split = { train = 0.0, validation = 0.5, heldout = 0.5 }"), "split =",
         "{L}: data.split.train: n_graphs = 30 splits into train 0, validation 15, heldout 15 "
         "graphs: data.mode = \"fixed\" trains on the training graphs' demonstrations, so at "
         "least one is needed (raise data.split.train or data.n_graphs)"),
    case("too-few-graphs-for-training",
         edit(SPLIT, "split = { train = 0.2, validation = 0.4, heldout = 0.4 }",
              edit("n_graphs = 30", "n_graphs = 2")), "n_graphs",
         "{L}: data.n_graphs: n_graphs = 2 splits into train 0, validation 1, heldout 1 graphs: "
         "data.mode = \"fixed\" trains on the training graphs' demonstrations, so at least one "
         "is needed (raise data.split.train or data.n_graphs)"),
    case("early-stopping-without-validation-graphs",
         edit(SPLIT, "split = { train = 0.8, validation = 0.0, heldout = 0.2 }",
              edit("steps = 40", "steps = 40\nearly_stopping = { patience = 2 }")), "split =",
         "{L}: data.split.validation: n_graphs = 30 splits into train 24, validation 0, "
         "heldout 6 graphs: train.early_stopping needs at least one validation graph (raise "
         "data.split.validation or data.n_graphs)"),
    case("early-stopping-with-too-few-graphs",
         edit(SPLIT, "split = { train = 0.6, validation = 0.1, heldout = 0.3 }",
              edit("n_graphs = 30", "n_graphs = 4",
                   edit("steps = 40", "steps = 40\nearly_stopping = { patience = 2 }"))),
         "n_graphs", "{L}: data.n_graphs: n_graphs = 4 splits into train 3, validation 0, "
         "heldout 1 graphs: train.early_stopping needs at least one validation graph (raise "
         "data.split.validation or data.n_graphs)"),
    case("validation-and-heldout-round-past-n-graphs",
         edit(SPLIT, 'mode = "online"\nsplit = { train = 0.0, validation = 0.5, heldout = 0.5 }',
              edit("n_graphs = 30", "n_graphs = 3")), "n_graphs",
         "{L}: data.n_graphs: n_graphs = 3 cannot be split: validation and heldout round to "
         "2 + 2 graphs, more than there are (change data.n_graphs or data.split)"),
    case("evaluating-spec-without-heldout-graphs",
         edit(None, "", USES.replace("n_graphs = 30", "n_graphs = 2")), "n_graphs",
         "{L}: data.n_graphs: n_graphs = 2 splits into train 2, validation 0, heldout 0 graphs: "
         "every spec is evaluated on its held-out graphs, so at least one is needed (raise "
         "data.split.heldout or data.n_graphs)"),
    setting("set-too-few-graphs", "data.n_graphs=2",
            "data.n_graphs: n_graphs = 2 splits into train 2, validation 0, heldout 0 graphs: "
            "every spec is evaluated on its held-out graphs, so at least one is needed (raise "
            "data.split.heldout or data.n_graphs)"),
    # ----------------------------------------------------------------- [stage] names
    case("uses-a-relative-path", USES.replace('"phase2a"', '"../specs/x"'), "uses =",
         f"{{L}}: stage.uses: '../specs/x' is not a spec name: give the name of {NAME_HINT}"),
    case("uses-an-absolute-path", USES.replace('"phase2a"', '"/etc/passwd"'), "uses =",
         f"{{L}}: stage.uses: '/etc/passwd' is not a spec name: give the name of {NAME_HINT}"),
    case("uses-dot-dot", USES.replace('"phase2a"', '".."'), "uses =",
         f"{{L}}: stage.uses: '..' is not a spec name: give the name of {NAME_HINT}"),
    case("uses-empty", USES.replace('"phase2a"', '""'), "uses =",
         f"{{L}}: stage.uses: '' is not a spec name: give the name of {NAME_HINT}"),
    case("requires-a-path", edit(None, '\n[stage]\nrequires = ["phase2a", "specs/phase2a"]\n'),
         "requires", f"{{L}}: stage.requires.1: 'specs/phase2a' is not a spec name: give the "
         f"name of {NAME_HINT}"),
    case("requires-a-backslash-path", edit(None, '\n[stage]\nrequires = ["..\\\\phase2a"]\n'),
         "requires", f"{{L}}: stage.requires.0: '..\\phase2a' is not a spec name: give the "
         f"name of {NAME_HINT}"),
    case("requires-an-unknown-spec", edit(None, '\n[stage]\nrequires = ["phase2b"]\n'),
         "requires", "{L}: stage.requires.0: no spec named 'phase2b' (phase2b.toml does not "
         "exist) (did you mean 'phase2a'?)"),
    case("uses-a-number", USES.replace('"phase2a"', "3"), "uses =",
         "{L}: stage.uses: Input should be a valid string (got 3)"),
    setting("set-uses-a-path", "stage.requires=['../x']",
            f"stage.requires.0: '../x' is not a spec name: give the name of {NAME_HINT}"),
    # ---------------------------------------------------------------- from_file graph files
    case("graph-file-with-a-word-in-a-cell", from_file("g.csv"), "graphs = [",
         "{L}: scm.graphs.0.path: graph file g.csv: row 3, column 'B': not a number",
         files={"g.csv": f",A,B\nA,0,1\nB,0,{SECRET}\n".encode()}),
    case("graph-file-rows-are-counted-in-lines", from_file("g.csv"), "graphs = [",
         "{L}: scm.graphs.0.path: graph file g.csv: row 5, column 'A': not a number",
         files={"g.csv": f"\n,A,B\n\nA,0,1\nB,{SECRET},0\n".encode()}),
    case("graph-file-empty", from_file("g.csv"), "graphs = [",
         "{L}: scm.graphs.0.path: graph file g.csv: empty file (expected a CSV adjacency "
         "matrix with a header row)", files={"g.csv": b"\n\n"}),
    case("graph-file-ragged", from_file("g.csv"), "graphs = [",
         "{L}: scm.graphs.0.path: graph file g.csv: row 2 has 2 cells but the header row has 3",
         files={"g.csv": f",A,B\nA,{SECRET}\nB,0,0\n".encode()}),
    case("graph-file-not-utf8", from_file("g.csv"), "graphs = [",
         "{L}: scm.graphs.0.path: graph file g.csv: not UTF-8 text (invalid byte 0xff at "
         "offset 4)", files={"g.csv": b",A,B\xff\nA,0,1\nB,0,0\n"}),
    case("graph-file-bad-npz", from_file("g.npz"), "graphs = [",
         "{L}: scm.graphs.0.path: graph file g.npz: not a .npz archive",
         files={"g.npz": SECRET.encode() * 10}),
    case("graph-file-npz-without-names", from_file("g.npz"), "graphs = [",
         "{L}: scm.graphs.0.path: graph file g.npz: must hold arrays 'G' and 'names' (has ['G'])",
         files={"g.npz": npz(G=np.zeros((2, 2)))}),
    case("graph-file-npz-with-text-matrix", from_file("g.npz"), "graphs = [",
         "{L}: scm.graphs.0.path: graph file g.npz: array 'G' must be numeric (has dtype <U7)",
         files={"g.npz": npz(G=np.array([[SECRET, "0"], ["0", "0"]]), names=np.array(["a", "b"]))}),
    case("graph-file-npz-nonfinite-coefficients", from_file("g.npz"), "graphs = [",
         "{L}: scm.graphs.0.path: graph file g.npz: W must hold finite numbers",
         files={"g.npz": npz(G=np.array([[0, 1], [0, 0]]), names=np.array(["a", "b"]),
                             W=np.array([[0, np.nan], [0, 0]]), b=np.zeros(2),
                             sigma=np.ones(2))}),
    case("graph-file-npz-with-object-arrays", from_file("g.npz"), "graphs = [",
         "{L}: scm.graphs.0.path: graph file g.npz: holds object arrays, which are not loaded "
         "(no pickles)",
         files={"g.npz": npz(G=np.zeros((2, 2)), names=np.array([SECRET, None], dtype=object))}),
    case("graph-file-duplicate-names", from_file("g.csv"), "graphs = [",
         "{L}: scm.graphs.0.path: graph file g.csv: variable names must be unique",
         files={"g.csv": b",A,A\nA,0,1\nA,0,0\n"}),
    case("graph-file-header-only", from_file("g.csv"), "graphs = [",
         "{L}: scm.graphs.0.path: graph file g.csv: row names must equal column names, in the "
         "same order", files={"g.csv": b",A,B\n"}),
    case("graph-file-missing", from_file("nope.csv"), "graphs = [",
         "{L}: scm.graphs.0.path: graph file nope.csv: no such file"),
    case("graph-file-is-a-directory", from_file("sub"), "graphs = [",
         "{L}: scm.graphs.0.path: graph file sub: is a directory, not a graph file",
         files={"sub/x": b""}),
    case("graph-file-wrong-suffix", from_file("g.txt"), "graphs = [",
         "{L}: scm.graphs.0.path: graph file g.txt: expected a .csv or .npz graph file",
         files={"g.txt": b",A,B\nA,0,1\nB,0,0\n"}),
    case("graph-file-with-a-cycle", from_file("g.csv"), "graphs = [",
         "{L}: scm.graphs.0.path: graph file g.csv: the graph has a cycle; an SCM needs a DAG",
         files={"g.csv": b",A,B\nA,0,1\nB,1,0\n"}),
    case("graph-file-self-loop", from_file("g.csv"), "graphs = [",
         "{L}: scm.graphs.0.path: graph file g.csv: self-loops are not allowed",
         files={"g.csv": b",A,B\nA,1,1\nB,0,0\n"}),
    case("graph-file-nan-cell", from_file("g.csv"), "graphs = [",
         "{L}: scm.graphs.0.path: graph file g.csv: G must hold finite numbers",
         files={"g.csv": b",A,B\nA,0,nan\nB,0,0\n"}),
    case("graph-file-row-names-differ", from_file("g.csv"), "graphs = [",
         "{L}: scm.graphs.0.path: graph file g.csv: row names must equal column names, in the "
         "same order", files={"g.csv": b",A,B\nB,0,1\nA,0,0\n"}),
    # ----------------------------------------------------------------- the spec file itself
    case("spec-not-utf8", SMOKE.encode().replace(b"smoke", b"sm\xffke"), "name =",
         f"{{L}}: not UTF-8 text (invalid byte 0xff at offset {SMOKE.index('smoke') + 2})"),
    case("spec-is-a-directory", DIR, None,
         "bad.toml: cannot read spec: it is a directory, not a .toml file"),
    # ---------------------------------------------------- wrong types, unknown keys and kinds
    case("bool-for-int", edit("steps = 40", "steps = true"), "steps =",
         "{L}: train.steps: Input should be a valid integer (got True)"),
    case("list-for-int", edit("n_obs = 60", "n_obs = [60]"), "n_obs",
         "{L}: scm.n_obs: Input should be a valid integer"),
    case("split-not-a-table", edit(SPLIT, "split = 0.5"), "split =",
         "{L}: data.split: Input should be a valid dictionary or instance of Split (got 0.5)"),
    case("graphs-a-string", edit(f"graphs = {ER}", 'graphs = "erdos_renyi"'), 'graphs = "',
         "{L}: scm.graphs: Input should be a valid list (got 'erdos_renyi')"),
    case("name-with-a-slash", edit('name = "smoke"', 'name = "a/b"'), "name =",
         "{L}: name: String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.-]*$' (got 'a/b')"),
    case("version-2", edit("version = 1", "version = 2"), "version",
         "{L}: version: Input should be 1 (got 2)"),
    case("unknown-expert-key", edit("prior = {", "priors = {"), "priors",
         "{L}: expert.priors: unknown key (did you mean 'prior'?); allowed: n_trials, "
         "outcome_samples, n_anchors, opt_steps, gp_fit_steps, kind, prior, posterior, features, "
         "n_rff, sigma_y, sigma_theta, prune_threshold"),
    case("unknown-noise-kind",
         edit("n_obs = 60", 'n_obs = 60\nnoise = { kind = "gausian" }'), "noise =",
         "{L}: scm.noise.kind: unknown kind 'gausian' (did you mean 'gaussian'?); expected one "
         "of: gaussian, laplace, cauchy, uniform, student_t"),
    case("unknown-graph-kind", edit('kind = "erdos_renyi"', 'kind = "erdos_reny"'), "graphs = [",
         "{L}: scm.graphs.0.kind: unknown kind 'erdos_reny' (did you mean 'erdos_renyi'?); "
         "expected one of: erdos_renyi, scale_free, scale_free_transpose, watts_strogatz, "
         "stochastic_block, chain, fork, collider, from_file"),
    case("unknown-hardware-key", edit(None, "\n[hardware]\ndevics = 1\n"), "devics",
         "{L}: hardware.devics: unknown key (did you mean 'devices'?); allowed: devices, "
         "max_wall_minutes, max_memory_gb, backend"),
    case("unknown-backend", edit(None, '\n[hardware]\nbackend = "rayy"\n'), "backend",
         "{L}: hardware.backend: Input should be 'local' or 'ray' (got 'rayy') (did you mean 'ray'?)"),
    case("unknown-aggregate", edit('aggregate = "median"', 'aggregate = "medain"'), "aggregate =",
         "{L}: gates.0.aggregate: Input should be 'pooled', 'mean', 'median', 'quantile' or "
         "'share' (got 'medain') (did you mean 'median'?)"),
    case("unknown-expert-kind", edit('kind = "parent_scale"', 'kind = "parent_scal"'),
         "parent_scal", "{L}: expert.kind: unknown kind 'parent_scal' (did you mean "
         "'parent_scale'?); expected one of: parent_scale, oracle, random"),
]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with phase2a.toml (for [stage] names), made the working directory so messages
    name files relative to it."""
    (tmp_path / "phase2a.toml").write_text((ROOT / "specs" / "phase2a.toml").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _lines(text) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text


@pytest.mark.parametrize("text, sets, marker, message, files", CASES)
def test_validate_refuses_with_one_clear_line(workdir, text, sets, marker, message, files):
    for name, data in files.items():
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_bytes(data)
    if text is DIR:
        (workdir / "bad.toml").mkdir()
    elif isinstance(text, bytes):
        (workdir / "bad.toml").write_bytes(text)
    else:
        (workdir / "bad.toml").write_text(text)
    if marker is not None:
        message = message.replace("{L}", f"bad.toml:{line_of(_lines(text), marker)}")
    args = ["validate", "bad.toml"] + [a for s in sets for a in ("--set", s)]
    result = CliRunner().invoke(app, args)
    assert "internal error" not in result.output and "Traceback" not in result.output
    assert SECRET not in result.output
    assert result.exit_code == 2, result.output
    assert result.stderr == message + "\n"
    assert result.stdout == ""


def test_an_unreadable_spec_is_a_spec_error(workdir, monkeypatch):
    # chmod does not stop root, so the read itself fails here.
    (workdir / "bad.toml").write_text(SMOKE)

    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    result = CliRunner().invoke(app, ["validate", "bad.toml"])
    assert result.exit_code == 2, result.output
    assert result.stderr == "bad.toml: cannot read spec: Permission denied\n"


def test_the_corpus_is_large_and_its_ids_unique():
    ids = [c.id for c in CASES]
    assert len(ids) >= 60 and len(set(ids)) == len(ids)


def test_split_counts_match_the_rounding_split_graphs_used():
    """The arithmetic split_graphs had (and now calls): round() for validation and heldout."""
    from engine.spec.data import split_counts

    for n in range(1, 12):
        for fractions in ({"train": 0.6, "validation": 0.2, "heldout": 0.2},
                          {"train": 0.0, "validation": 0.2, "heldout": 0.8}):
            counts = split_counts(n, fractions)
            assert sum(counts.values()) == n
            assert counts["heldout"] == round(fractions["heldout"] * n)
    assert split_counts(3, {"train": 0.0, "validation": 0.5, "heldout": 0.5})["train"] == -1
