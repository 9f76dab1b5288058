"""The verdict line and the gates table, from a run's ``gates.json``.

``gates.json`` is :meth:`engine.gates.Verdict.to_json` (NaN as null): every number here is read
from it, none recomputed. A record written before gates had groups (each gate PASS / FAIL) is
still shown, with what it holds.

A relative drop is worded, never signed: "5% worse [2% better, 12% worse]" and "at most 20%
worse", so that a better value needs no negative drop to say so. Thresholds read as written in
the spec ("2x", "0.7", "10 ms").
"""

from __future__ import annotations

from typing import Any

from engine.report.run import fmt_pct, fmt_seconds, is_num, time_unit
from engine.report.tables import Grid, _c, fmt_interval, verdict_cell

_ORDER = {"NO-GO": 0, "INCONCLUSIVE": 1}


def gate_verdict(g: dict[str, Any]) -> str:
    if g.get("verdict"):
        return str(g["verdict"])
    return {True: "GO", False: "NO-GO"}.get(g.get("passed"), "—")  # an older record: PASS / FAIL


def is_drop(g: dict[str, Any]) -> bool:
    """A gate on the relative drop of a metric against another side or stage."""
    return g.get("relative") == "drop" and "metric" in g


def unit(g: dict[str, Any]) -> str:
    """How a gate's value reads: a speedup "x", a time "s", a share or a drop "%"."""
    if g.get("aggregate") == "share" or is_drop(g):
        return "%"
    if g.get("vs") or g.get("relative"):
        return ""
    return {"speedup": "x", "full_speedup": "x", "seconds": "s"}.get(g.get("metric"), "")


def _g(x: float) -> str:
    """A threshold as it was written: 2, 0.7, 1e-05."""
    return f"{float(x):g}"


def _bound(x: Any, u: str) -> str:
    if not is_num(x):
        return "—"
    if u == "s":  # a time threshold as written: "10 ms", "2 s"
        if abs(x) >= 60:
            return fmt_seconds(x)
        scale, t = time_unit(x)
        return f"{_g(x * scale)} {t}"
    return f"{_g(100.0 * x)}%" if u == "%" else f"{_g(x)}{u}"


def _pct(x: float) -> str:
    return fmt_pct(abs(float(x)))


def _side(x: float) -> str:
    return "worse" if x > 0 else "better" if x < 0 else ""


def worded_drop(x: Any) -> str:
    """A drop as a word: 0.05 -> "5% worse", -0.03 -> "3% better", 0 -> "no change"."""
    if not is_num(x):
        return "—"
    return f"{_pct(x)}% {_side(x)}" if x else "no change"


def drop_interval(value: Any, low: Any = None, high: Any = None) -> str:
    """ "5% worse [2, 12]", "3% better [1, 6]", "5% worse [2% better, 12% worse]"."""
    if not is_num(value):
        return "n/a"
    text = worded_drop(value)
    if is_num(low) and is_num(high):
        if low >= 0 and value >= 0 or high <= 0 and value <= 0:
            a, b = sorted((abs(low), abs(high)))
            text += f" [{fmt_pct(a)}, {fmt_pct(b)}]"
        else:
            text += f" [{worded_drop(low)}, {worded_drop(high)}]"
    return text


def _drop_bound(t: float, op: str) -> str:
    """ "<= 0.2" -> "at most 20% worse"; "<= -0.05" -> "at least 5% better"."""
    word = _side(t) or "worse"
    if op == "<=":
        return f"{'at most' if t >= 0 else 'at least'} {_pct(t)}% {word}"
    return f"{'at least' if t >= 0 else 'at most'} {_pct(t)}% {word}"


def subject(g: dict[str, Any], with_stage: bool = False) -> str:
    """'median speedup', 'pooled f1 drop vs expert', with the side when it is not the model."""
    if "metric" not in g:
        return str(g.get("name", "gate"))
    what = f"{g.get('aggregate') or ''} {g['metric']}".strip()
    if g.get("aggregate") == "share":
        what = f"share of graphs by {g['metric']}"
    if is_drop(g):
        what += f" vs {g['vs']}" if g.get("vs") else " vs the reference stage"
    elif g.get("vs") or g.get("relative"):
        what += f" {g.get('relative') or 'drop'} vs {g.get('vs') or 'the reference stage'}"
    if g.get("side") and g["side"] != "model":
        what = f"{g['side']}'s {what}"
    return what + (f" on {g['stage']}" if with_stage and g.get("stage") else "")


def condition(g: dict[str, Any]) -> str:
    """'>= 2x (NO-GO < 1.5x)', '<= 20%', 'in [0.5, 2]'."""
    u, t, nogo = unit(g), g.get("threshold"), g.get("nogo")
    op = g.get("op", "")
    if is_drop(g) and op in (">=", "<=") and is_num(t):
        text = _drop_bound(t, op)
        if is_num(nogo):
            text += f" (NO-GO beyond {worded_drop(nogo)})"
        return text
    if is_drop(g) and op == "in" and isinstance(t, list) and len(t) == 2:
        return f"from {worded_drop(t[0])} to {worded_drop(t[1])}"
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
    if is_drop(g):
        return drop_interval(g["value"], g.get("low"), g.get("high"))
    return fmt_interval(g["value"], g.get("low"), g.get("high"), unit(g))


def reason(g: dict[str, Any], with_stage: bool = False) -> str:
    """Why a gate is not GO: 'median speedup 1.36x [1.2, 1.5] < 2x'."""
    what, value, u = subject(g, with_stage), _value(g), unit(g)
    if value == "undefined":
        return f"{what} undefined ({condition(g)})"
    t, op, no = g.get("threshold"), g.get("op"), gate_verdict(g) == "NO-GO"
    if is_drop(g):
        return f"{what} {value} (needs {_drop_bound(t, op) if is_num(t) else condition(g)}" \
               f"{'' if no else ', not clearly met'})"
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
