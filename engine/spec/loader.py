"""Load a spec file: TOML -> overrides -> pydantic, every problem as `file:line: path: message`."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from engine.spec.base import suggest
from engine.spec.locate import line_of, locate_lines


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SpecError(Exception):
    """A spec that cannot be used, with every problem found (the CLI prints them, exit 2)."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class SpecFile:
    """A validated spec with where it came from."""

    path: Path
    text: str
    raw: dict  # the TOML as written, overrides applied
    spec: Any  # engine.spec.root.Spec
    overrides: tuple[str, ...] = field(default=())

    @property
    def directory(self) -> Path:
        return self.path.parent


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """'train.optimizer.lr=3e-4' -> (('train','optimizer','lr'), 0.0003); bare words are strings."""
    if "=" not in text:
        raise ValueError(f"--set {text}: expected dotted.path=value")
    key, value = text.split("=", 1)
    path = tuple(p.strip() for p in key.strip().split("."))
    if not all(re.fullmatch(r"[A-Za-z0-9_-]+", p) for p in path):
        raise ValueError(f"--set {text}: '{key}' is not a dotted key path")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return path, parsed


def _apply_override(raw: dict, path: tuple[str, ...], value: Any) -> tuple[tuple, list[tuple]]:
    """Set `value` at `path` (a number after an array indexes it: gates.0.min); return that path
    as the document's (indices as ints) and the tables it had to create (the override's)."""
    node, created, out = raw, [], []
    for i, part in enumerate(path):
        if isinstance(node, list):  # only entered when `part` is a number
            if int(part) >= len(node):
                raise ValueError(f"'{'.'.join(path[:i])}' has {len(node)} element(s), no '{part}'")
            part = int(part)
        out.append(part)
        if i == len(path) - 1:
            node[part] = value
            break
        nxt = node[part] if isinstance(node, list) else node.get(part)
        if not (isinstance(nxt, dict) or (isinstance(nxt, list) and path[i + 1].isdigit())):
            nxt = node[part] = {}
            created.append(tuple(out))
        node = nxt
    return tuple(out), created


def _raw_path(raw: Any, loc: tuple) -> tuple[tuple, tuple | None]:
    """The document path of a pydantic `loc`, and (path, label) of the plain-union member the
    error came from, or None.

    pydantic inserts labels into `loc`: the tag of a discriminated union ('adam' for
    kind = "adam", which may also be a key of that table, like a gate's `metric`) and, for a
    plain union (`int | SizeRange`), the member ('int', 'function-after[..., SizeRange]').
    """
    out: list = []
    member = None
    node = raw
    tagged = False  # the current table's tag was seen: pydantic puts it once, right after
    for part in loc:
        is_dict = isinstance(node, dict)
        if is_dict and not tagged and part in (node.get("kind"), node.get("dist")):
            tagged = True  # a discriminated union's tag, not a key
            continue
        if is_dict and part in node:
            out.append(part)
            node, tagged = node[part], False
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            out.append(part)
            node, tagged = node[part], False
        elif member is None:
            member = (tuple(out), str(part))
    return tuple(out), member


def _pick_members(errors: list[tuple[dict, tuple | None]]) -> list[dict]:
    """Of a plain union's members that all failed at one path, keep the errors of the best fits.

    A member that only reports a wrong type loses to one that accepted the type (the input was
    a table and `int` says "not an integer"); then one that knows every key of the table wins;
    then fewer errors; then a did-you-mean.
    """
    groups: dict[tuple, dict[str, list[int]]] = {}
    for n, (_, member) in enumerate(errors):
        if member is not None:
            groups.setdefault(member[0], {}).setdefault(member[1], []).append(n)
    drop: set[int] = set()
    for members in groups.values():
        if len(members) < 2:
            continue
        kinds = {m: [errors[n][0]["type"] for n in ns] for m, ns in members.items()}
        only_type = {m for m, ks in kinds.items() if all(k.endswith("_type") for k in ks)}
        fits = {m: ns for m, ns in members.items() if m not in only_type} or members
        fits = {m: ns for m, ns in fits.items() if "unknown_key" not in kinds[m]} or fits
        fewest = min(len(ns) for ns in fits.values())
        fits = {m: ns for m, ns in fits.items() if len(ns) == fewest}
        hinted = {
            m: ns for m, ns in fits.items()
            if any((errors[n][0].get("ctx") or {}).get("hint") for n in ns)
        }
        keep = {n for ns in (hinted or fits).values() for n in ns}
        drop |= {n for ns in members.values() for n in ns} - keep
    return [e for n, (e, _) in enumerate(errors) if n not in drop]


def _message(err: dict) -> tuple[str, tuple]:
    """A person-readable message for one pydantic error, and extra path parts to append."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "unknown_key":
        return f"unknown key{ctx['hint']}; allowed: {ctx['allowed']}", (ctx["key"],)
    if kind == "spec_at":  # engine.spec.base.error_at: the error names keys below its model
        return ctx["message"], tuple(ctx["at"])
    if kind == "union_tag_invalid":
        tags = re.findall(r"'([^']*)'", ctx.get("expected_tags", ""))
        field_name = "kind" if "kind" in ctx.get("discriminator", "") else "dist"
        tags = [t for t in tags if t != "fixed"]
        return (
            f"unknown {field_name} '{ctx.get('tag')}'{suggest(str(ctx.get('tag')), tags)}; "
            f"expected one of: {', '.join(tags)}",
            (field_name,),
        )
    if kind == "union_tag_not_found":
        if "kind" in ctx.get("discriminator", ""):
            return "missing key 'kind' (it selects which variant this table is)", ()
        got = f" (got {err['input']!r})" if not isinstance(err.get("input"), dict) else ""
        if "_param_tag" in ctx.get("discriminator", ""):
            return "expected a number or a table with dist = 'uniform', 'signed_uniform', " \
                   f"'normal', 'lognormal' or 'choice'{got}", ()
        return f"expected a number or a table with a 'kind'{got}", ()
    if kind == "missing":
        return "missing required key", ()  # the caller appends the key
    message = err["msg"]
    message = re.sub(r"^(Value error|Assertion failed), ", "", message)
    if kind not in ("value_error", "assertion_error") and "input" in err and not isinstance(
        err["input"], (dict, list)
    ):
        message += f" (got {err['input']!r})"
    if kind == "literal_error" and isinstance(err.get("input"), str):
        message += suggest(err["input"], re.findall(r"'([^']*)'", ctx.get("expected", "")))
    return message, ()


def validate(raw: dict, lines: dict, display: str, overrides: dict, context: dict):
    from engine.spec.root import Spec

    try:
        return Spec.model_validate(raw, context=context)
    except ValidationError as exc:
        problems = []
        located = [(err, _raw_path(raw, err["loc"])) for err in exc.errors()]
        for err in _pick_members([(err, where[1]) for err, where in located]):
            path = _raw_path(raw, err["loc"])[0]
            message, extra = _message(err)
            if err["type"] == "missing":
                extra = err["loc"][-1:]  # the key that is absent
            path = path + extra
            dotted = ".".join(str(p) for p in path)
            # The override that set this value, or that added this unknown key.
            added = err["type"] == "unknown_key"
            source = next(
                (o for p, o in overrides.items()
                 if path[: len(p)] == p or (added and p[: len(path)] == path)),
                None,
            )
            if source is not None:
                problems.append(Problem(f"--set {source}", None, dotted, message))
            else:
                problems.append(Problem(display, line_of(lines, path), dotted, message))
        # A wrong key often causes "missing" errors elsewhere; report the cause first.
        problems.sort(key=lambda p: (p.line is None, p.line or 0))
        raise SpecError(problems) from None


def _read_text(path: Path, display: str) -> str:
    def fail(message: str, line: int | None = None) -> SpecError:
        return SpecError([Problem(display, line, "", message)])

    if path.is_dir():
        raise fail("cannot read spec: it is a directory, not a .toml file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read spec: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise fail(
            f"not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at offset {exc.start})", line
        ) from None


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SpecFile:
    """Read, override and validate a spec file; raise SpecError with every problem."""
    path = Path(path)
    display = _display(path)
    text = _read_text(path, display)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        if m:
            msg = f"TOML syntax error: {msg} (column {m.group(2)})"
        raise SpecError([Problem(display, int(m.group(1)) if m else None, "", msg)]) from None
    applied: dict[tuple, str] = {}
    for text_override in overrides:
        try:
            key, value = parse_override(text_override)
        except ValueError as exc:
            message = str(exc).removeprefix(f"--set {text_override}: ")
            raise SpecError([Problem(f"--set {text_override}", None, "", message)]) from None
        try:
            key, made = _apply_override(raw, key, value)
        except ValueError as exc:
            raise SpecError([Problem(f"--set {text_override}", None, "", str(exc))]) from None
        for table in made:
            applied.setdefault(table, text_override)
        applied[key] = text_override
    lines = locate_lines(text)
    spec = validate(raw, lines, display, applied, {"spec_dir": path.resolve().parent})
    _check_references(spec, path, lines, display)
    return SpecFile(path=path, text=text, raw=raw, spec=spec, overrides=tuple(overrides))


def _check_references(spec, path: Path, lines: dict, display: str) -> None:
    """[stage] names, evaluation.models and [optimize] surrogates' models must be spec files
    beside this one."""
    problems = []
    names = [(("stage", "uses"), spec.stage.uses)] if spec.stage.uses else []
    names += [(("stage", "requires", i), n) for i, n in enumerate(spec.stage.requires)]
    names += [(("evaluation", "models", i), n) for i, n in enumerate(spec.evaluation.models)]
    if spec.optimize is not None:
        names += [(("optimize", "strategies", i, "surrogate", "model"), s.surrogate.model)
                  for i, s in enumerate(spec.optimize.strategies)
                  if s.surrogate.kind == "model" and s.surrogate.model]
    for where, name in names:
        if not (path.parent / f"{name}.toml").exists():
            known = sorted(p.stem for p in path.parent.glob("*.toml") if p != path)
            problems.append(
                Problem(
                    display,
                    line_of(lines, where),
                    ".".join(str(w) for w in where),
                    f"no spec named '{name}' ({path.parent / (name + '.toml')} does not exist)"
                    f"{suggest(name, known)}",
                )
            )
    if problems:
        raise SpecError(problems)


def sibling(spec_file: SpecFile, name: str) -> SpecFile:
    """Load the spec `name` that lives beside `spec_file` (for [stage] uses / requires)."""
    return load(spec_file.directory / f"{name}.toml")
