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


def _apply_override(raw: dict, path: tuple[str, ...], value: Any) -> None:
    node = raw
    for part in path[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = node[part] = {}
        node = nxt
    node[path[-1]] = value


def _raw_path(raw: Any, loc: tuple) -> tuple:
    """Drop the union tags pydantic inserts into `loc` (e.g. 'adam' for kind = "adam")."""
    out: list = []
    node = raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(node, dict) or isinstance(node, list):
            continue  # a tag, or a function-validator name
        else:
            out.append(part)
    return tuple(out)


def _message(err: dict) -> tuple[str, tuple]:
    """A person-readable message for one pydantic error, and extra path parts to append."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "unknown_key":
        return f"unknown key{ctx['hint']}; allowed: {ctx['allowed']}", (ctx["key"],)
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
        return "expected a number or a table with dist = 'uniform', 'signed_uniform', " \
               "'normal', 'lognormal' or 'choice'", ()
    if kind == "missing":
        return "missing required key", ()
    message = err["msg"]
    message = re.sub(r"^(Value error|Assertion failed), ", "", message)
    if kind not in ("value_error", "assertion_error") and "input" in err and not isinstance(
        err["input"], (dict, list)
    ):
        message += f" (got {err['input']!r})"
    return message, ()


def validate(raw: dict, lines: dict, display: str, overrides: dict, context: dict):
    from engine.spec.root import Spec

    try:
        return Spec.model_validate(raw, context=context)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = _raw_path(raw, err["loc"])
            message, extra = _message(err)
            path = path + extra
            dotted = ".".join(str(p) for p in path)
            source = next(
                (o for p, o in overrides.items() if path[: len(p)] == p), None
            )
            if source is not None:
                problems.append(Problem(f"--set {source}", None, dotted, message))
            else:
                problems.append(Problem(display, line_of(lines, path), dotted, message))
        # A wrong key often causes "missing" errors elsewhere; report the cause first.
        problems.sort(key=lambda p: (p.line is None, p.line or 0))
        raise SpecError(problems) from None


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SpecFile:
    """Read, override and validate a spec file; raise SpecError with every problem."""
    path = Path(path)
    display = _display(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError([Problem(display, None, "", f"cannot read spec: {exc.strerror}")]) from None
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
            raise SpecError([Problem("--set", None, "", str(exc).removeprefix("--set "))]) from None
        _apply_override(raw, key, value)
        applied[key] = text_override
    lines = locate_lines(text)
    spec = validate(raw, lines, display, applied, {"spec_dir": path.resolve().parent})
    _check_references(spec, path, lines, display)
    return SpecFile(path=path, text=text, raw=raw, spec=spec, overrides=tuple(overrides))


def _check_references(spec, path: Path, lines: dict, display: str) -> None:
    """[stage] names must be spec files beside this one."""
    problems = []
    names = [(("uses",), spec.stage.uses)] if spec.stage.uses else []
    names += [(("requires", i), n) for i, n in enumerate(spec.stage.requires)]
    for where, name in names:
        if not (path.parent / f"{name}.toml").exists():
            known = sorted(p.stem for p in path.parent.glob("*.toml") if p != path)
            problems.append(
                Problem(
                    display,
                    line_of(lines, ("stage",) + where),
                    ".".join(str(w) for w in ("stage",) + where),
                    f"no spec named '{name}' ({path.parent / (name + '.toml')} does not exist)"
                    f"{suggest(name, known)}",
                )
            )
    if problems:
        raise SpecError(problems)


def sibling(spec_file: SpecFile, name: str) -> SpecFile:
    """Load the spec `name` that lives beside `spec_file` (for [stage] uses / requires)."""
    return load(spec_file.directory / f"{name}.toml")
