"""acbo: a declarative engine for amortized causal Bayesian optimization.

`engine.load(run)` gives a Predictor for a trained run (see engine.infer); importing `engine`
stays free of JAX until it is called.
"""


def load(run, registry=None):
    """The `engine.infer.Predictor` of a run folder or of a spec name's latest run."""
    from engine.infer import load as _load

    return _load(run, registry)
