"""Building blocks shared by every spec section: strict frozen models and sampled parameters.

This package must never import jax: validating a spec is instant and works anywhere. Sections
that build runtime objects import their runtime modules lazily inside ``build()``.
"""

from __future__ import annotations

import difflib
import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator
from pydantic_core import PydanticCustomError


def suggest(word: str, options: list[str]) -> str:
    """' (did you mean 'x'?)' for the closest option, or ''."""
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


FLOAT32_MAX = 3.4028234663852886e38  # the runtime computes in float32


def error_at(at: tuple, message: str) -> PydanticCustomError:
    """A validation error about the keys `at` below the model that raises it (the loader appends
    them to the error's path, so the line is the key's, not the table's)."""
    return PydanticCustomError("spec_at", "{message}", {"at": tuple(at), "message": message})


def _bad_number(value: Any, at: tuple) -> tuple[tuple, str] | None:
    """(path, why) of the first non-finite or float32-overflowing number in `value` (a scalar or
    a list of them), or None. Tables are left to their own Section."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _bad_number(item, at + (i,))
            if found:
                return found
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return at, f"must be a finite number (got {value!r})"
    if abs(value) > FLOAT32_MAX:
        return at, f"must fit in float32 (|x| <= {FLOAT32_MAX:.8g}) (got {value!r})"
    return None


class Section(BaseModel):
    """Base of every spec model: strict, frozen, unknown keys are errors with a suggestion,
    numbers must be finite float32 values."""

    # allow_inf_nan=False is a backstop: the before-validator below already names the key.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = [f.alias or name for name, f in cls.model_fields.items()]
            for key in data:
                if key not in known:
                    raise PydanticCustomError(
                        "unknown_key",
                        "unknown key '{key}'{hint}; allowed: {allowed}",
                        {"key": key, "hint": suggest(str(key), known), "allowed": ", ".join(known)},
                    )
            # TOML allows nan and inf; checked here, per key, so the error names the key.
            for key, value in data.items():
                found = _bad_number(value, (key,))
                if found:
                    raise error_at(*found)
        return data


class Uniform(Section):
    """x ~ U(low, high)."""

    dist: Literal["uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> "Uniform":
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class SignedUniform(Uniform):
    """x = s * U(low, high) with a random sign s = +-1 (AVICI's weight distribution)."""

    dist: Literal["signed_uniform"]  # type: ignore[assignment]
    low: float = Field(ge=0)


class Normal(Section):
    """x ~ N(mean, std^2)."""

    dist: Literal["normal"]
    mean: float = 0.0
    std: float = Field(gt=0)


class LogNormal(Section):
    """log x ~ N(mean, std^2)."""

    dist: Literal["lognormal"]
    mean: float = 0.0
    std: float = Field(gt=0)


class Choice(Section):
    """x drawn from `values`, with optional `weights` (uniform when absent)."""

    dist: Literal["choice"]
    values: list[float] = Field(min_length=1)
    weights: list[float] | None = None

    @model_validator(mode="after")
    def _weights_match(self) -> "Choice":
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError(
                    f"weights has {len(self.weights)} entries but values has {len(self.values)}"
                )
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError("weights must be non-negative with a positive sum")
        return self


def _param_tag(value: Any) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "fixed"
    if isinstance(value, dict):
        return value.get("dist")
    if isinstance(value, BaseModel):
        return getattr(value, "dist", None)
    return None


_DIST_CHOICES = (
    Annotated[Uniform, Tag("uniform")],
    Annotated[SignedUniform, Tag("signed_uniform")],
    Annotated[Normal, Tag("normal")],
    Annotated[LogNormal, Tag("lognormal")],
    Annotated[Choice, Tag("choice")],
)

Dist = Annotated[Union[_DIST_CHOICES], Discriminator(_param_tag)]
"""A sampled hyper-parameter: an inline table ``{ dist = "uniform", low = 1, high = 2 }``."""

Param = Annotated[
    Union[(Annotated[float, Tag("fixed")],) + _DIST_CHOICES], Discriminator(_param_tag)
]
"""A hyper-parameter: a fixed number, or a `Dist` table sampled per use."""


def param_bounds(p: Any) -> tuple[float, float]:
    """The smallest interval that holds every value `p` can take (inf for unbounded dists)."""
    if isinstance(p, (int, float)):
        return float(p), float(p)
    if isinstance(p, SignedUniform):
        return -p.high, p.high
    if isinstance(p, Uniform):
        return p.low, p.high
    if isinstance(p, Choice):
        return min(p.values), max(p.values)
    if isinstance(p, LogNormal):
        return 0.0, float("inf")
    return float("-inf"), float("inf")
