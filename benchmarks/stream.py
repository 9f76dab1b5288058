"""Streamed vs device-resident demonstrations: training throughput and peak memory.

    .venv/bin/python benchmarks/stream.py [--graphs 5000] [--per-graph 10] [--steps 50]

Writes a phase 2C-shaped set (graphs x per-graph demonstrations, d = 8 padded, 200
observational rows, 26 interventional rows) as the demonstrations stage does (one .npy per
field), then trains phase2c's model on it in two fresh processes side by side:
- stream: the engine's path, DemoStream over read-only memory maps (each batch's rows read on
  the host and sent to the device);
- resident: the anchor, the whole set loaded onto the device and gathered inside the step (what
  training did before the stream).
Each child prints seconds per step (the best of three calls of a scanned chunk after the
compiling one) and its anonymous resident memory (RssAnon: the heap, not the page cache that
memory maps use, which the kernel reclaims) above its baseline after building the model. The
two modes alternate, twice each; the best time of each is compared. `--obs` and `--d` scale the
set up to show what stays in memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def anon_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_set(folder: Path, graphs: int, per_graph: int, d=8, n_obs=200, k=26) -> int:
    """The set's files; its size in bytes."""
    import numpy as np

    rng = np.random.default_rng(0)
    n = graphs * per_graph
    rows_mask = np.zeros((graphs, k, d), bool)
    rows_mask[:, np.arange(k), np.arange(k) % d] = True
    target = rng.integers(0, d, graphs).astype(np.int32)
    parents = rng.random((graphs, d)) < 0.3
    parents[np.arange(graphs), target] = False
    adjacency = np.zeros((graphs, d, d), bool)
    adjacency[np.arange(graphs), :, target] = parents
    arrays = dict(
        obs=rng.standard_normal((graphs, n_obs, d), np.float32),
        rows_values=rng.standard_normal((graphs, k, d), np.float32), rows_mask=rows_mask,
        rows_valid=np.ones((graphs, k), bool), var_mask=np.ones((graphs, d), bool), target=target,
        parents=parents, graph_id=np.arange(graphs, dtype=np.int32),
        demo_graph=np.repeat(np.arange(graphs, dtype=np.int32), per_graph),
        demo_k=np.tile(np.arange(1, per_graph + 1, dtype=np.int32), graphs),
        expert=rng.random((n, d), np.float32), adjacency=adjacency,
    )
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        np.save(folder / f"{name}.npy", a)
    return sum(a.nbytes for a in arrays.values())


def child(folder: str, mode: str, steps: int) -> None:
    import equinox as eqx
    import jax
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from engine.data.demos import Demonstrations, gather
    from engine.spec.loader import load
    from engine.train.sources import augment_batch
    from engine.train.trainer import Trainer

    spec = load(ROOT / "specs" / "phase2c.toml").spec
    trainer = Trainer(spec, jax.devices()[:1])
    state = trainer.init(jax.random.PRNGKey(0))
    base = anon_rss_mb()
    names = Demonstrations.__dataclass_fields__
    maps = {f: np.load(Path(folder) / f"{f}.npy", mmap_mode="r") for f in names}

    class Resident(eqx.Module):  # the anchor: every demonstration on the device
        demos: Demonstrations

        def __call__(self, key, step, batch_size):
            key = jax.random.fold_in(key, step)
            idx = jax.random.randint(key, (batch_size,), 0, self.demos.demo_graph.shape[0])
            return augment_batch(gather(self.demos, idx), jax.random.fold_in(key, 1))

    data = Demonstrations.on_host(maps) if mode == "stream" else Resident(Demonstrations.from_numpy(maps))
    key = jax.random.PRNGKey(1)
    state, losses, _ = trainer.run_steps(state, data, key, steps)
    losses.block_until_ready()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        state, losses, _ = trainer.run_steps(state, data, key, steps)
        losses.block_until_ready()
        best = min(best, (time.perf_counter() - started) / steps)
    print(json.dumps({"mode": mode, "s_per_step": best, "anon_above_baseline_mb": anon_rss_mb() - base}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--graphs", type=int, default=5000)
    ap.add_argument("--per-graph", type=int, default=10)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--obs", type=int, default=200)
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--child", nargs=2)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        size = write_set(Path(tmp), args.graphs, args.per_graph, d=args.d, n_obs=args.obs)
        print(f"{args.graphs * args.per_graph} demonstrations from {args.graphs} graphs "
              f"(d = {args.d}, {args.obs} observational rows): {size / 1e6:.0f} MB on disk")
        out = {}
        for mode in ("stream", "resident", "stream", "resident"):
            r = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--child", tmp, mode],
                               capture_output=True, text=True, check=True)
            got = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"{mode:9s} {got['s_per_step'] * 1e3:7.1f} ms/step   heap +{got['anon_above_baseline_mb']:.0f} MB")
            if mode not in out or got["s_per_step"] < out[mode]["s_per_step"]:
                out[mode] = got
        ratio = out["stream"]["s_per_step"] / out["resident"]["s_per_step"]
        print(f"stream / resident time per step: {ratio:.2f}")


if __name__ == "__main__":
    main()
