"""Model throughput and memory, printed side by side (no assertions).

  .venv/bin/python benchmarks/models.py [--quick]

1. Training examples/s (parent-head BCE, Adam step, batch 16, 100 obs + 4 d interventional
   rows) of `stats` and `avici` at d = 8 and d = 20 on this machine.
2. Cost of the graph head relative to the parent head (stats: one parent pass per target).
3. Peak memory of avici inference at n = 10,000 rows, d = 50 (XLA's memory analysis of the
   compiled function: arguments + outputs + temporaries), full attention vs row chunks, and the
   wall time of one chunked forward pass.
"""

from __future__ import annotations

import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from engine.data.demos import Batch  # noqa: E402
from engine.spec.model import AviciModel, BceLoss, StatsModel  # noqa: E402
from engine.train.losses import build_loss  # noqa: E402

QUICK = "--quick" in sys.argv
SPECS = {"stats": StatsModel(kind="stats"), "avici": AviciModel(kind="avici")}


def _batch(b, n, d, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, n, d, 2)).astype(np.float32)
    x[..., 1] = 0
    x[:, 100:, :, 1] = np.eye(d)[np.arange(n - 100) % d]
    adj = np.triu(rng.random((b, d, d)) < 0.2, 1)
    target = rng.integers(0, d, b).astype(np.int32)
    return Batch(
        x=jnp.asarray(x), row_mask=jnp.ones((b, n), bool), var_mask=jnp.ones((b, d), bool),
        target=jnp.asarray(target), parents=jnp.asarray(adj[np.arange(b), :, target]),
        expert=jnp.full((b, d), 0.5), adjacency=jnp.asarray(adj),
    )


def _time(fn, *args, repeats):
    jax.block_until_ready(fn(*args))  # compile
    started = time.perf_counter()
    for _ in range(repeats):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - started) / repeats


def throughput():
    print("1. training throughput (examples/s, batch 16, CPU)" if jax.default_backend() == "cpu" else "1. training throughput")
    loss = build_loss(BceLoss(kind="bce"))
    opt = optax.adam(1e-3)
    for d in (8, 20):
        batch = _batch(16, 100 + 4 * d, d)
        row = []
        for name, spec in SPECS.items():
            model = spec.build(jax.random.PRNGKey(0))
            state = opt.init(eqx.filter(model, eqx.is_array))

            @eqx.filter_jit
            def step(m, s, b):
                (val, aux), g = eqx.filter_value_and_grad(lambda m: loss(m, b, jnp.float32(0)), has_aux=True)(m)
                u, s = opt.update(g, s, eqx.filter(m, eqx.is_array))
                return eqx.apply_updates(m, u), s, val

            dt = _time(step, model, state, batch, repeats=2 if QUICK else 5)
            row.append(f"{name} {16 / dt:8.1f}")
        print(f"   d={d:3d}:  " + "   ".join(row))


def graph_vs_parent():
    print("2. graph head / parent head forward time (batch 16)")
    for d in (8, 20):
        b = _batch(16, 100 + 4 * d, d)
        row = []
        for name, spec in SPECS.items():
            model = spec.build(jax.random.PRNGKey(0))
            par = eqx.filter_jit(lambda m, b: jax.vmap(m)(b.x, b.row_mask, b.var_mask, b.target))
            gra = eqx.filter_jit(lambda m, b: jax.vmap(m.graph)(b.x, b.row_mask, b.var_mask))
            tp = _time(par, model, b, repeats=3)
            tg = _time(gra, model, b, repeats=3)
            row.append(f"{name}: parent {tp * 1e3:7.1f} ms, graph {tg * 1e3:7.1f} ms ({tg / tp:4.1f}x)")
        print(f"   d={d:3d}:  " + "   ".join(row))


def memory(n=10_000, d=50):
    print(f"3. avici inference at n={n}, d={d} (dim 64, 4 layers; XLA memory analysis)")
    x, rm, vm = jnp.zeros((n, d, 2)), jnp.ones(n, bool), jnp.ones(d, bool)
    for chunk in (None, 1000, 500, 200):
        model = SPECS["avici"].model_copy(update={"row_chunk": chunk}).build(jax.random.PRNGKey(0))
        params, static = eqx.partition(model, eqx.is_array)
        fn = jax.jit(lambda p, x, r, v: jax.nn.sigmoid(eqx.combine(p, static).graph(x, r, v)))
        compiled = fn.lower(params, x, rm, vm).compile()
        mem = compiled.memory_analysis()
        peak = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
        line = f"   row_chunk={str(chunk):>5}: peak {peak / 2**30:7.2f} GiB (temporaries {mem.temp_size_in_bytes / 2**30:.2f})"
        if chunk == 500 and not QUICK:
            rng = np.random.default_rng(0)
            data = jnp.asarray(rng.normal(size=(n, d, 2)).astype(np.float32)).at[..., 1].set(0)
            started = time.perf_counter()
            jax.block_until_ready(compiled(params, data, jnp.ones(n, bool), jnp.ones(d, bool)))
            line += f", one forward pass {time.perf_counter() - started:.1f} s"
        print(line)


if __name__ == "__main__":
    print(f"backend {jax.default_backend()}, devices {jax.devices()}")
    if "--memory" not in sys.argv:
        throughput()
        graph_vs_parent()
    memory()
