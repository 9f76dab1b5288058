"""JSON Schema of spec files, for editors (Taplo / Even Better TOML complete and check specs)."""

from __future__ import annotations

from engine.evaluate.catalog import METRICS
from engine.spec.root import Spec


def metric_registry() -> dict:
    """name -> {direction, aggregates, default_aggregate, scope, sides, description}."""
    return {
        m.name: {
            "direction": m.direction,
            "higher_is_better": m.higher_is_better,
            "aggregates": list(m.aggregates),
            "default_aggregate": m.default_aggregate,
            "scope": m.scope,
            "sides": list(m.sides) if m.sides is not None else None,  # None: every side
            "range": [m.lower, m.upper],
            "description": m.description,
        }
        for m in METRICS.values()
    }


def spec_schema() -> dict:
    """The schema of the root spec; each kind's docstring becomes its description. The metric
    registry (what a gate's `metric` may name) is under `x-acbo-metrics`."""
    schema = Spec.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "acbo spec"
    metrics = metric_registry()
    schema["x-acbo-metrics"] = metrics
    gate = schema.get("$defs", {}).get("GateSpec")
    if gate:  # editors show a value's description on hover
        gate["properties"]["metric"]["description"] = "; ".join(
            f"{k}: {v['description']} ({v['direction']})" for k, v in metrics.items())
    return schema
