"""JSON Schema of spec files, for editors (Taplo / Even Better TOML complete and check specs)."""

from __future__ import annotations

from engine.spec.root import Spec


def spec_schema() -> dict:
    """The schema of the root spec; each kind's docstring becomes its description."""
    schema = Spec.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "acbo spec"
    return schema
