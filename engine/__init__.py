"""acbo: a declarative engine for amortized causal Bayesian optimization.

`engine.load(run)` (also `acbo.load`) gives a Predictor for a trained run (see engine.infer);
importing `engine` or `acbo` stays free of JAX until it is called.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("acbo")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"


def load(run, registry=None):
    """The `engine.infer.Predictor` of a run folder, its model.eqx, or a spec name's latest run
    (`registry`: where spec names are looked up; default $ACBO_REGISTRY or ./registry)."""
    from engine.infer import load as _load

    return _load(run, registry)
