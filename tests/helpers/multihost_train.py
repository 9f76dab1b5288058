"""One process of a data-parallel training run, for tests/test_multihost.py.

    python multihost_train.py PROCESS_ID PROCESSES DEVICES_PER_PROCESS PORT WORKDIR OUT

Joins a `jax.distributed` run through the environment (as `acbo apply` does on a cluster) when
PROCESSES > 1, trains the smoke spec's stats model on memory-mapped demonstrations every
process writes identically, and saves its final parameters and the rows of the global batch it
fed to OUT.
"""

import os
import sys

pid, processes, per_process, port, workdir, out = sys.argv[1:7]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={per_process}"
if int(processes) > 1:
    os.environ.update(JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JAX_NUM_PROCESSES=processes, JAX_PROCESS_ID=pid)

from pathlib import Path  # noqa: E402

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from engine.data.demos import Demonstrations  # noqa: E402
from engine.spec.loader import load  # noqa: E402
from engine.train.parallel import fed_sharding, select_devices  # noqa: E402
from engine.train.sources import _local_rows  # noqa: E402
from engine.train.trainer import Trainer  # noqa: E402


def demonstrations(folder: Path, n_graphs: int) -> Demonstrations:
    """tests/test_train.py's synthetic demonstrations, as memory-mapped .npy files."""
    from test_train import synthetic_demos

    folder.mkdir(parents=True, exist_ok=True)
    arrays = synthetic_demos(n_graphs=n_graphs).to_numpy()
    for name, a in arrays.items():
        np.save(folder / f"{name}.npy", a)
    return Demonstrations.on_host({name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in arrays})


def main() -> None:
    spec = load(ROOT / "specs" / "smoke.toml", [
        "model.dim=8", "model.layers=1", "model.heads=1", "train.steps=12", "train.batch_size=8",
        "train.log_every=2", "train.checkpoint_every=4", "train.ema=0.9",
    ]).spec
    devices = select_devices("all")
    assert len(devices) == int(processes) * int(per_process), devices
    trainer = Trainer(spec, devices)
    demos = demonstrations(Path(workdir) / f"demos-{pid}", n_graphs=24)
    validation = demonstrations(Path(workdir) / f"val-{pid}", n_graphs=6)
    state = trainer.fit(demos, validation, Path(workdir), warn=lambda m: None)
    model = trainer.final_model(state, Path(workdir))
    leaves = [np.asarray(a) for a in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))]
    rows = _local_rows(fed_sharding(trainer.mesh), (1, spec.train.batch_size))
    np.savez(out, rows=np.asarray(rows), step=int(np.asarray(trainer.summary["steps"])),
             **{f"leaf{i}": a for i, a in enumerate(leaves)})


if __name__ == "__main__":
    try:
        main()
    except BaseException:  # noqa: BLE001 - exit at once: the peer would wait on us at shutdown
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
