"""XLA compile seconds this process has spent, from jax.monitoring's compile events: so a
measured run can report its one-off compile apart from its steady-state time."""

from __future__ import annotations

import jax

_TOTAL = [0.0]
_WATCHING = [False]


def _on_event(name: str, secs: float, **_) -> None:
    if name.startswith("/jax/core/compile/"):
        _TOTAL[0] += secs


def compile_seconds() -> float:
    """Seconds compiled so far (counting starts at the first call: call once before timing)."""
    if not _WATCHING[0]:
        jax.monitoring.register_event_duration_secs_listener(_on_event)
        _WATCHING[0] = True
    return _TOTAL[0]
