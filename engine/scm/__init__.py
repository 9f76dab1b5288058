"""JAX simulation of SCM distributions (see engine.spec.scm for what a spec declares).

Public API (imported lazily so that `engine.scm.files` stays usable without jax):
    simulate(spec, key, n_graphs, base_dir=None) -> (SCM, Dataset)   batched over graphs
    save(path, scm, data) / load(path, spec, n_graphs, base_dir=None) -> (SCM, Dataset)
    SCM, Dataset, Simulator, linear_optimum
"""

from __future__ import annotations

_EXPORTS = {
    "SCM": "engine.scm.model",
    "Dataset": "engine.scm.types",
    "Simulator": "engine.scm.simulator",
    "simulate": "engine.scm.simulator",
    "simulate_with_diagnostics": "engine.scm.simulator",
    "Diagnostics": "engine.scm.simulator",
    "SimulationError": "engine.scm.simulator",
    "save": "engine.scm.io",
    "load": "engine.scm.io",
    "linear_optimum": "engine.scm.optimum",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'engine.scm' has no attribute {name!r}")
