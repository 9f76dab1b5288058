"""Accelerator training-step benchmark: throughput, FLOP/s against the vendor peak, memory, compile time.

    python benchmarks/gpu.py [--quick] [--bf16] [--budget-s S] [--out gpu_benchmark.json] [--windows 5] [--window-s 1]

Per configuration (model kind, dim, d variables, n rows, batch) it compiles the project's own
training step (`Trainer._update`: parent-head BCE forward + backward, global-norm clipping, Adam;
params and optimizer state donated, as in training) on one fixed batch, then times it: warm-up
steps are discarded and the step time is the median of `--windows` windows of ~`--window-s`
seconds, each closed by `block_until_ready`. Steps are dispatched one by one from Python (the
trainer scans them), so for tiny steps the figure includes dispatch overhead.
Runs on whatever `jax.devices()[0]` is; `--quick` shrinks the grid for a CPU check.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import re
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import equinox as eqx  # noqa: E402
import jax  # noqa: E402

from engine.spec.loader import load  # noqa: E402
from engine.train.trainer import Trainer  # noqa: E402

# Vendor spec-sheet peaks, dense (no 2:4 sparsity), TFLOP/s: fp32 = CUDA cores, tf32 = tensor
# cores on float32 inputs, bf16 = tensor cores. Vendor peaks are upper bounds at boost clock,
# never reached by real kernels. At JAX's default matmul precision XLA lets cuBLAS use TF32 on
# Ampere and later (TPUs: one bfloat16 pass), so float32 runs are compared with "tf32" unless
# the precision is set to "highest"/"float32" (then "fp32"); --bf16 runs with "bf16".
PEAKS = [  # (regex on device.device_kind, {precision: TFLOP/s}); first match wins
    (r"H100.*PCIe", {"fp32": 51.2, "tf32": 378, "bf16": 756}),
    (r"H100 NVL", {"fp32": 60, "tf32": 418, "bf16": 835}),
    (r"H100|H200", {"fp32": 67, "tf32": 495, "bf16": 989}),  # SXM; GH200 matches too
    (r"A100", {"fp32": 19.5, "tf32": 156, "bf16": 312}),
    (r"L40S", {"fp32": 91.6, "tf32": 183, "bf16": 362}),
    (r"\bL4\b", {"fp32": 30.3, "tf32": 60, "bf16": 121}),
    (r"V100", {"fp32": 15.7, "tf32": 15.7}),  # no TF32/bf16 tensor cores: fp32 runs on CUDA cores
    (r"TPU v4", {"tf32": 275, "bf16": 275}),
    (r"TPU v5 ?lite|v5e", {"tf32": 197, "bf16": 197}),
    (r"TPU v5", {"tf32": 459, "bf16": 459}),
    (r"TPU v6", {"tf32": 918, "bf16": 918}),
]

_spec = importlib.util.spec_from_file_location("bench_models", ROOT / "benchmarks" / "models.py")
_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_models)
make_batch = _models._batch  # 100 observational rows, then interventional rows cycling over the d variables


def grid(quick: bool):
    """(kind, dim, d, n, batch) tuples. Full grid: ~13 configs, sized for an 80-140 GB GPU."""
    if quick:
        return [("stats", 32, 5, 120, 8), ("stats", 32, 8, 120, 8), ("avici", 32, 5, 120, 8)]
    # avici first: it is the model an accelerator matters for, and --budget-s cuts from the end.
    out = [("avici", dim, d, 200, 64) for dim in (64, 128) for d in (8, 20, 50)]
    # Sample attention is O(n^2) per variable: n = 1000 only at a smaller batch (~80 GB on CPU's estimate).
    out += [("avici", 64, 20, 1000, 32)]
    return out + [("stats", dim, d, 1000, 256) for dim in (64, 128) for d in (8, 20, 50)]


def peak_for(kind: str, bf16: bool):
    precision = str(jax.config.jax_default_matmul_precision or "default").lower()
    full = precision in ("highest", "float32", "f32_f32_f32")
    key = "bf16" if bf16 or precision == "bfloat16" else ("fp32" if full else "tf32")
    for pattern, peaks in PEAKS:
        if re.search(pattern, kind):
            return key, peaks.get(key)
    return key, None


def nbytes(tree) -> int:
    return sum(a.nbytes for a in jax.tree.leaves(eqx.filter(tree, eqx.is_array)))


def memory(device) -> dict:
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without the query raise various errors
        stats = {}
    return {k: stats[k] for k in ("bytes_in_use", "peak_bytes_in_use", "bytes_limit") if k in stats}


def xla_cost(compiled) -> dict:
    out = {}
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older jax: one dict per program
        if cost and cost.get("flops", 0) > 0:
            out["xla_flops_per_step"] = float(cost["flops"])
    except Exception:  # noqa: BLE001 - not every backend implements it
        pass
    try:
        mem = compiled.memory_analysis()
        out["xla_step_bytes"] = int(mem.argument_size_in_bytes + mem.output_size_in_bytes
                                    + mem.temp_size_in_bytes - mem.alias_size_in_bytes)
    except Exception:  # noqa: BLE001
        pass
    return out


def bench(kind, dim, d, n, batch_size, bf16, windows, window_s, device) -> dict:
    overrides = [f'model={{ kind = "{kind}", dim = {dim}, heads = 4 }}', 'loss={ kind = "bce" }',
                 f"train.batch_size={batch_size}", "train.accumulate=1",
                 f'train.precision="{"bf16" if bf16 else "fp32"}"']
    spec = load(ROOT / "specs" / "smoke.toml", overrides).spec
    trainer = Trainer(spec, [device])
    state = trainer.init(jax.random.PRNGKey(0))
    arrays, static = eqx.partition(state, eqx.is_array)
    batch = jax.device_put(make_batch(batch_size, n, d), device)
    row = {"param_bytes": nbytes(state.model), "opt_state_bytes": nbytes(state.opt_state)}

    def step(arrays, batch):
        new, loss, _ = trainer._update(eqx.combine(arrays, static), batch)
        return eqx.filter(new, eqx.is_array), loss

    started = time.perf_counter()
    lowered = jax.jit(step, donate_argnums=0).lower(arrays, batch)
    row["trace_s"] = time.perf_counter() - started
    started = time.perf_counter()
    compiled = lowered.compile()
    row["compile_s"] = time.perf_counter() - started
    row.update(xla_cost(compiled))

    def run(steps):
        nonlocal arrays
        started = time.perf_counter()
        for _ in range(steps):
            arrays, loss = compiled(arrays, batch)
        jax.block_until_ready((arrays, loss))
        return time.perf_counter() - started, float(loss)

    run(2)  # warm-up, discarded: the first calls allocate buffers and load kernels
    probe, _ = run(3)
    per_window = max(3, min(2000, math.ceil(window_s / (probe / 3))))
    times = []
    for _ in range(windows):
        elapsed, loss = run(per_window)
        times.append(elapsed / per_window)
    step_s = statistics.median(times)
    row.update(step_s=step_s, step_s_windows=times, steps_per_window=per_window, loss=loss,
               steps_per_s=1 / step_s, examples_per_s=batch_size / step_s)
    # fwd + bwd ~ 3 x fwd (the backward pass costs two matmuls per forward one); Adam is negligible.
    row["spec_flops_per_example"] = 3 * spec.model.forward_flops(n, d)
    row["spec_flops_per_s"] = row["spec_flops_per_example"] * row["examples_per_s"]
    if "xla_flops_per_step" in row:
        row["xla_flops_per_s"] = row["xla_flops_per_step"] * row["steps_per_s"]
    peak_key, peak = peak_for(device.device_kind, bf16)
    row.update(peak_key=peak_key, peak_tflops=peak)
    if peak:
        for src in ("spec", "xla"):
            if f"{src}_flops_per_s" in row:
                row[f"{src}_fraction_of_peak"] = row[f"{src}_flops_per_s"] / (peak * 1e12)
    row.update(memory(device))  # bytes_in_use with this config's state and batch still alive
    return row


def fmt(row) -> str:
    mb = lambda key: f"{row[key] / 2**20:9.1f}" if key in row else f"{'n/a':>9}"
    tf = lambda key: f"{row[key] / 1e12:9.3f}" if key in row else f"{'n/a':>9}"
    pct = lambda key: f"{100 * row[key]:8.2f}" if key in row else f"{'n/a':>8}"
    return (f"{row['compile_s']:8.1f}{row['step_s'] * 1e3:10.2f}{row['examples_per_s']:11.1f}"
            f"{row['steps_per_s']:9.1f}{tf('spec_flops_per_s')}{tf('xla_flops_per_s')}"
            f"{pct('spec_fraction_of_peak')}{pct('xla_fraction_of_peak')}"
            f"{(row['param_bytes'] + row['opt_state_bytes']) / 2**20:8.2f}"
            f"{mb('xla_step_bytes')}{mb('bytes_in_use')}{mb('peak_bytes_in_use')}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny grid, short windows (CPU check)")
    parser.add_argument("--bf16", action="store_true", help="also run every config with train.precision = bf16")
    parser.add_argument("--out", default="gpu_benchmark.json")
    parser.add_argument("--windows", type=int, default=None, help="timed windows (default 5, quick 2)")
    parser.add_argument("--budget-s", type=float, default=None, help="start no config after this many seconds")
    parser.add_argument("--window-s", type=float, default=None, help="seconds per window (default 1, quick 0.2)")
    args = parser.parse_args()
    windows = args.windows or (2 if args.quick else 5)
    window_s = args.window_s or (0.2 if args.quick else 1.0)
    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
    device = jax.devices()[0]
    precision = jax.config.jax_default_matmul_precision
    header = {"device_kind": device.device_kind, "platform": device.platform, "devices": len(jax.devices()),
              "jax": jax.__version__, "jaxlib": importlib.metadata.version("jaxlib"),
              "default_matmul_precision": precision or "default", "windows": windows, "window_s": window_s}
    print(f"device {device.device_kind} ({device.platform}, {len(jax.devices())} visible, using 1); "
          f"jax {jax.__version__}; float32 matmul precision: {precision or 'default'}")
    for pattern, peaks in PEAKS:
        if re.search(pattern, device.device_kind):
            print(f"vendor dense peaks (TFLOP/s): {peaks}; %pk compares with {peak_for(device.device_kind, False)[0]} "
                  "for float32 rows, bf16 for bf16 rows")
            break
    else:
        print("no peak figures for this device kind: %pk is n/a")
    print("spec = 3 x forward_flops (analytic), xla = XLA cost analysis of the whole step; state = params + Adam "
          "state; xla_MB = compiled step's arguments + outputs + temporaries; in_use after the config, peak = "
          "running peak since start (JAX cannot reset it)")
    print(f"{'model':<7}{'dim':>4}{'d':>4}{'n':>6}{'B':>5}{'prec':>6}{'comp_s':>8}{'step_ms':>10}{'ex/s':>11}"
          f"{'step/s':>9}{'TF/s spc':>9}{'TF/s xla':>9}{'%pk spc':>8}{'%pk xla':>8}{'stateMB':>8}"
          f"{'xla_MB':>9}{'in_useMB':>9}{'peak_MB':>9}")
    rows, started, out = [], time.perf_counter(), Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for kind, dim, d, n, batch in grid(args.quick):
        for bf16 in (False, True) if args.bf16 else (False,):
            cfg = {"kind": kind, "dim": dim, "d": d, "n": n, "batch": batch, "precision": "bf16" if bf16 else "fp32"}
            label = f"{kind:<7}{dim:>4}{d:>4}{n:>6}{batch:>5}{cfg['precision']:>6}"
            if args.budget_s and time.perf_counter() - started > args.budget_s:
                row = {**cfg, "skipped": "--budget-s reached"}
                print(label + "  skipped (--budget-s reached)")
            else:
                row = run_one(cfg, label, windows, window_s, device)
            rows.append(row)
            header["wall_s"] = time.perf_counter() - started
            # Rewritten after every config, so a run killed by a time limit still leaves its rows.
            out.write_text(json.dumps({**header, "results": rows}, indent=1))
    print(f"{len(rows)} configs in {header['wall_s']:.0f} s; results written to {out}")


def run_one(cfg, label, windows, window_s, device) -> dict:
    try:
        args = (cfg[k] for k in ("kind", "dim", "d", "n", "batch"))
        row = {**cfg, **bench(*args, cfg["precision"] == "bf16", windows, window_s, device)}
        print(label + fmt(row), flush=True)
    except Exception as exc:  # noqa: BLE001 - e.g. out of memory: record it, go on
        row = {**cfg, "error": f"{type(exc).__name__}: {str(exc)[:400]}", **memory(device)}
        print(label + f"  FAILED {row['error'][:120]}", flush=True)
    return row


if __name__ == "__main__":
    main()
