"""The verdict line and the gates table, from a run's ``gates.json``.

``gates.json`` is :meth:`engine.gates.Verdict.to_json` (NaN as null): every number here is read
from it, none recomputed. A record written before gates had groups (each gate PASS / FAIL) is
still shown, with what it holds.
"""

from __future__ import annotations

from typing import Any

from engine.report.run import fmt, fmt_seconds, is_num
from engine.report.tables import Grid, _c, fmt_interval, verdict_cell

_ORDER = {"NO-GO": 0, "INCONCLUSIVE": 1}


def gate_verdict(g: dict[str, Any]) -> str:
    if g.get("verdict"):
        return str(g["verdict"])
    return {True: "GO", False: "NO-GO"}.get(g.get("passed"), "—")  # an older record: PASS / FAIL


def unit(g: dict[str, Any]) -> str:
    """How a gate's value reads: a speedup "x", a time "s", a share or a drop "%"."""
    if g.get("aggregate") == "share" or (g.get("relative") == "drop" and g.get("vs")):
        return "%"
    if g.get("vs"):
        return ""
    return {"speedup": "x", "full_speedup": "x", "seconds": "s"}.get(g.get("metric"), "")


def _bound(x: Any, u: str) -> str:
    if not is_num(x):
        return "—"
    if u == "s":
        return fmt_seconds(x)
    return f"{fmt(100.0 * x)}%" if u == "%" else f"{fmt(float(x))}{u}"


def subject(g: dict[str, Any], with_stage: bool = False) -> str:
    """'median speedup', 'pooled f1 drop vs expert', with the side when it is not the model."""
    if "metric" not in g:
        return str(g.get("name", "gate"))
    what = f"{g.get('aggregate') or ''} {g['metric']}".strip()
    if g.get("aggregate") == "share":
        what = f"share of graphs by {g['metric']}"
    if g.get("vs"):
        what += f" {g.get('relative') or 'drop'} vs {g['vs']}"
    if g.get("side") and g["side"] != "model":
        what = f"{g['side']}'s {what}"
    return what + (f" on {g['stage']}" if with_stage and g.get("stage") else "")


def condition(g: dict[str, Any]) -> str:
    """'>= 2x (NO-GO < 1.5x)', '<= 20%', 'in [0.5, 2]'."""
    u, t, nogo = unit(g), g.get("threshold"), g.get("nogo")
    op = g.get("op", "")
    if op == "in" and isinstance(t, list) and len(t) == 2:
        text = f"in [{_bound(t[0], u)}, {_bound(t[1], u)}]"
        if isinstance(nogo, list) and any(is_num(x) for x in nogo):
            text += f" (NO-GO outside [{_bound(nogo[0], u)}, {_bound(nogo[1], u)}])"
        return text
    text = f"{op} {_bound(t, u)}".strip()
    if is_num(nogo):
        text += f" (NO-GO {'<' if op == '>=' else '>'} {_bound(nogo, u)})"
    return text


def _value(g: dict[str, Any]) -> str:
    if "low" not in g and "high" not in g:  # an older record: a bare value
        return _bound(g.get("value"), unit(g)) if is_num(g.get("value")) else "—"
    if not is_num(g.get("value")):
        return "undefined"
    return fmt_interval(g["value"], g.get("low"), g.get("high"), unit(g))


def reason(g: dict[str, Any], with_stage: bool = False) -> str:
    """Why a gate is not GO: 'median speedup 1.36x [1.2, 1.5] < 2x'."""
    what, value, u = subject(g, with_stage), _value(g), unit(g)
    if value == "undefined":
        return f"{what} undefined ({condition(g)})"
    t, op, no = g.get("threshold"), g.get("op"), gate_verdict(g) == "NO-GO"
    if op == "in" and isinstance(t, list):
        return f"{what} {value} {'outside' if no else 'not clearly in'} [{_bound(t[0], u)}, {_bound(t[1], u)}]"
    if op in (">=", "<="):
        cmp = {">=": "<", "<=": ">"}[op] if no else f"not clearly {op}"
        return f"{what} {value} {cmp} {_bound(t, u)}"
    return f"{what} {value} fails {op} {_bound(t, u)}".replace("  ", " ")


def verdict_line(gates: dict[str, Any] | None) -> str:
    """'NO-GO: 1 of 3 gates not GO; median speedup 1.36x [1.2, 1.5] < 2x'."""
    if not gates:
        return "No gate verdict (this run has no gates.json: `acbo gate SPEC` judges one)"
    verdict = gates.get("verdict") or "no verdict"
    listed = [g for g in gates.get("gates") or [] if isinstance(g, dict)]
    if not listed:
        return f"{verdict}: no gates"
    bad = sorted((g for g in listed if gate_verdict(g) != "GO"),
                 key=lambda g: _ORDER.get(gate_verdict(g), 2))
    if not bad:
        return f"{verdict}: all {len(listed)} gates GO"
    staged = len({g.get("stage") for g in listed}) > 1
    why = "; ".join(reason(g, staged) for g in bad[:3])
    more = f"; {len(bad) - 3} more" if len(bad) > 3 else ""
    return f"{verdict}: {len(bad)} of {len(listed)} gates not GO; {why}{more}"


def gates_grid(gates: dict[str, Any]) -> Grid:
    """Each gate: verdict, value with its 95% interval and n, condition, evidence."""
    listed = [g for g in gates.get("gates") or [] if isinstance(g, dict)]
    groups = gates.get("groups") or {}
    grouped = len(groups) > 1
    staged = len({g.get("stage") for g in listed}) > 1
    headers = ["Gate", *(["Group"] if grouped else []), *(["Stage"] if staged else []),
               "Verdict", "Value [95% CI]", "n", "Condition", "Evidence"]
    rows = []
    for g in listed:
        ev = g.get("evidence")
        rows.append([
            _c(str(g.get("name", "—"))),
            *([_c(str(g.get("group", "—")))] if grouped else []),
            *([_c(str(g.get("stage", "—")))] if staged else []),
            verdict_cell(gate_verdict(g)),
            _c(_value(g)),
            _c(g["n"] if isinstance(g.get("n"), int) else "—"),
            _c(condition(g)),
            _c(ev if isinstance(ev, str) else "—" if ev is None else str(ev)),
        ])
    n_go = sum(gate_verdict(g) == "GO" for g in listed)
    caption = f"{n_go} of {len(listed)} gates GO"
    if groups:
        caption += "; groups: " + "; ".join(
            f"{k} ({v.get('policy', 'all')}): {v.get('verdict', '—')}" for k, v in groups.items())
    return Grid(f"Gates: {gates.get('verdict') or 'no verdict'}", headers, rows, caption=caption)
