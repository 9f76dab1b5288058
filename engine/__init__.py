"""acbo: a declarative engine for amortized causal Bayesian optimization.

`engine.load(run)` gives a Predictor for a trained run (see engine.infer); importing `engine`
stays free of JAX until it is called.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("acbo")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"


def load(run, registry=None):
    """The `engine.infer.Predictor` of a run folder or of a spec name's latest run."""
    from engine.infer import load as _load

    return _load(run, registry)
