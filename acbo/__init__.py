"""acbo: a declarative engine for amortized causal Bayesian optimization.

    import acbo
    model = acbo.load("registry/phase2a/20250101-120000-abcdef")   # a run, its model.eqx, or a spec name
    graph = model(df)                     # a pandas DataFrame, a CSV path, or (array, names)
    graph.to_pandas(); graph.to_networkx(threshold=0.5)
    model.parents(df, target="Y")         # {name: P(name -> Y)}

The engine lives in the `engine` package; this one is its public face. Importing it loads no
JAX: `load` does, when it is called.
"""

from engine import __version__, load

__all__ = ["__version__", "load", "Graph", "Predictor", "InferError"]


def __getattr__(name: str):
    """`acbo.Graph`, `acbo.Predictor`, `acbo.InferError`, imported when first used."""
    if name in ("Graph", "Predictor", "InferError"):
        import engine.infer

        return getattr(engine.infer, name)
    raise AttributeError(f"module 'acbo' has no attribute {name!r}")
