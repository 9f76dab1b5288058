"""Users' files: CSV tables read and checked (every problem names the file, line and column),
output paths checked before any work, outputs written atomically. NumPy only: NumPy's C reader
parses the values, the csv module takes the files it cannot and names what is wrong."""

from __future__ import annotations

import csv
import io
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.spec.base import suggest

F32_MAX = float(np.finfo(np.float32).max)


class InferError(ValueError):
    """A problem with the user's run or files (the CLI prints it and exits 2)."""


@dataclass(frozen=True)
class Table:
    """A numeric table: `names` [d], `values` [n, d] (read_csv gives float64); `source` names
    its file in messages and `lines` holds each row's line in that file."""

    names: tuple[str, ...]
    values: np.ndarray
    source: str = ""
    lines: tuple[int, ...] | None = None

    def line(self, i: int) -> int:
        return self.lines[i] if self.lines else i + 2


def _show(text: str, limit: int = 40) -> str:
    """A cell or name quoted on one line (repr escapes newlines), long ones cut."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def count_zero_fraction(values: np.ndarray) -> float | None:
    """The fraction of zeros when `values` look like single-cell counts (non-negative
    integers, at least a fifth of them zero), else None."""
    v = np.asarray(values)
    if v.size == 0 or (v < 0).any() or (v != np.round(v)).any():
        return None
    zeros = float((v == 0).mean())
    return zeros if zeros >= 0.2 else None


def check_output(path: Path | str, others: dict | None = None) -> Path:
    """Refuse an output path that cannot be written, before any work: its folder must exist and
    be writable, and it must not be a directory, a special file or one of `others` ({label: path})."""
    path = Path(path)
    real = Path(os.path.realpath(path))
    if real.is_dir():
        raise InferError(f"{path}: is a directory; give a file name for the output")
    if real.exists() and not real.is_file():
        raise InferError(f"{path}: not a regular file; give a file name for the output")
    if not real.parent.is_dir():
        raise InferError(f"{path}: folder {path.parent} does not exist")
    if not os.access(real.parent, os.W_OK | os.X_OK):
        raise InferError(f"{path}: folder {path.parent} is not writable")
    for label, other in (others or {}).items():
        if other is not None and Path(os.path.realpath(other)) == real:
            raise InferError(f"{path}: is also {label}; choose another output file")
    return path


def write_output(path: Path | str, data: bytes) -> None:
    """Write a user's output atomically (a symlink's target is replaced, not the link)."""
    from engine.registry import write_atomic

    try:
        write_atomic(Path(os.path.realpath(path)), data)
    except OSError as exc:
        raise InferError(f"{path}: cannot write ({exc.strerror or exc})") from None


def read_csv(path: Path | str, what: str = "data") -> Table:
    """A UTF-8 CSV with a header of variable names and numeric cells; errors name the file,
    line and column."""
    path = Path(path)
    if path.is_dir():
        raise InferError(f"{path}: is a directory; expected a CSV file of {what}")
    if not path.is_file():
        raise InferError(f"{path}: {what} file does not exist" if not path.exists()
                         else f"{path}: not a regular file; expected a CSV file of {what}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InferError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")  # a BOM (Excel's "CSV UTF-8") is fine
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InferError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save it as UTF-8 CSV"
        ) from None
    if "\x00" in text:
        raise InferError(f"{path}: binary data (NUL bytes), not a CSV text file")
    fast = _read_fast(text)
    if fast is not None:
        names, values = fast
        _check_names(path, names)
        return Table(names, values, str(path), None)  # row i is on line i + 2
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows, lines = [], []
    try:
        for row in reader:
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        hint = "; an opening quote is never closed?" if "end of data" in str(exc) else ""
        raise InferError(f"{path}:{reader.line_num}: not valid CSV ({exc}{hint})") from None
    if not rows or not any(c.strip() for c in rows[0]):
        raise InferError(f"{path}: empty file; expected a header row of variable names")
    names = tuple(c.strip() for c in rows[0])
    _check_names(path, names)
    body = [(r, line) for r, line in zip(rows[1:], lines[1:]) if any(c.strip() for c in r)]
    if not body:
        raise InferError(f"{path}: no data rows below the header")
    values = np.empty((len(body), len(names)), np.float64)
    for i, (row, line) in enumerate(body):
        if len(row) != len(names):
            raise InferError(f"{path}:{line}: {len(row)} cells but the header has {len(names)} columns")
        for j, cell in enumerate(row):
            where = f"{path}:{line}: column {_show(names[j])}"
            if not cell.strip():
                raise InferError(f"{where}: empty cell; every cell needs a number")
            try:
                value = float(cell)
            except ValueError:
                raise InferError(f"{where}: {_show(cell.strip())} is not a number") from None
            if np.isnan(value) or (np.isinf(value) and not any(c.isdigit() for c in cell)):
                raise InferError(f"{where}: {cell.strip()} is not a finite number")
            if abs(value) > F32_MAX:
                raise InferError(f"{where}: {cell.strip()} is beyond float32's range (±{F32_MAX:.4g}); rescale the column")
            values[i, j] = value
    return Table(names, values, str(path), tuple(line for _, line in body))


def _check_names(path: Path, names: tuple[str, ...]) -> None:
    """The header's variable names: present, one per column, printable, distinct, not data."""
    if "" in names:
        raise InferError(f"{path}:1: column {names.index('') + 1} has no name; every column needs a variable name")
    if len(names) == 1 and any(sep in names[0] for sep in ";\t|"):
        raise InferError(f"{path}:1: the header is one column {_show(names[0])}; separate cells with commas")
    odd = [n for n in names if any(unicodedata.category(c) == "Cc" for c in n)]
    if odd:
        raise InferError(f"{path}:1: variable name {_show(odd[0])} contains a control character (a line break?)")
    dup = [n for i, n in enumerate(names) if n in names[:i]]
    if dup:
        raise InferError(f"{path}:1: variable name {_show(dup[0])} appears more than once in the header")
    # A headerless file would silently lose its first row to the names; integer names (0,1,2) are fine.
    if all(_is_number(n) for n in names) and not all(n.isdigit() for n in names):
        raise InferError(f"{path}:1: the first row holds numbers, not variable names; add a header row")


def _read_fast(text: str) -> tuple[tuple[str, ...], np.ndarray] | None:
    """Header and values of a plain CSV (no quotes, no blank lines: row i on line i + 2), parsed
    by NumPy's C reader (measured on 100,000 x 20: 0.45 s, against 3-14 s for `float` cell by
    cell). pandas' reader takes 0.1 s there, but it is optional and its import alone costs 0.3 s,
    60x NumPy's whole read of a 1000 x 20 file, the common case. None when the file needs the careful
    path: a quote, a blank line, a cell NumPy does not parse or a value that is not finite or
    beyond float32. NumPy accepts a subset of what `float` does, so the result is the same."""
    header, sep, body = text.partition("\n")
    if not sep or '"' in text or not header.strip(" \t\r,"):
        return None
    body = body.replace("\r\n", "\n")
    if "\r" in body or not body.strip():
        return None  # old Mac line ends, or no rows: the careful path says what is wrong
    if any(not line.strip(" \t,") for line in body.rstrip("\n").split("\n")):
        return None  # a blank row: skipped there, and later rows' line numbers move
    names = tuple(c.strip() for c in header.rstrip("\r").split(","))
    try:
        values = np.loadtxt(io.StringIO(body), delimiter=",", comments=None, quotechar=None,
                            dtype=np.float64, ndmin=2)
    except ValueError:
        return None
    if values.shape[1] != len(names) or not (np.abs(values) <= F32_MAX).all():  # nan fails too
        return None
    return names, values


def _table(data, what: str) -> Table:
    """A Table from a CSV path, a pandas DataFrame (its columns name the variables) or a
    2-D NumPy array with `names` given as `(array, names)`."""
    if isinstance(data, Table):
        return data
    if isinstance(data, (str, Path)):
        return read_csv(data, what)
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):  # a DataFrame, without importing pandas
        names, values = [str(c) for c in data.columns], data.to_numpy()
    elif isinstance(data, tuple) and len(data) == 2:
        values, names = data
        names = [str(n) for n in names]
    else:
        raise InferError(
            f"{what}: expected a CSV path, a pandas DataFrame or (array, names), got {type(data).__name__}"
        )
    try:
        values = np.asarray(values, np.float64)
    except (TypeError, ValueError):
        raise InferError(f"{what}: values must be numbers") from None
    if values.ndim != 2 or values.shape[1] != len(names):
        raise InferError(f"{what}: expected a 2-D table with one column per name ({len(names)}), "
                         f"got shape {values.shape}")
    if len(set(names)) != len(names) or "" in names:
        raise InferError(f"{what}: variable names must be distinct and non-empty")
    if not np.isfinite(values).all() or (np.abs(values) > F32_MAX).any():
        raise InferError(f"{what}: values must be finite numbers within float32's range")
    return Table(tuple(names), values)


def align_mask(data: Table, mask: Table | None) -> np.ndarray:
    """The 0/1 intervention mask as bool [n, d] in the data's column order."""
    if mask is None:
        return np.zeros(data.values.shape, bool)
    where = mask.source or "intervention mask"
    missing = [n for n in data.names if n not in mask.names]
    extra = [n for n in mask.names if n not in data.names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if extra:
            parts.append(f"extra column(s) {', '.join(extra)}{suggest(extra[0], list(data.names))}")
        raise InferError(f"{where}: {'; '.join(parts)} (its header must match the data's)")
    if mask.values.shape[0] != data.values.shape[0]:
        raise InferError(
            f"{where}: intervention mask has {mask.values.shape[0]} rows but the data have {data.values.shape[0]}"
        )
    values = mask.values[:, [mask.names.index(n) for n in data.names]]
    bad = np.argwhere((values != 0) & (values != 1))
    if bad.size:
        i, j = bad[0]
        raise InferError(f"{where}:{mask.line(i)}: column {_show(data.names[j])}: {values[i, j]:g} is not 0 or 1")
    return values.astype(bool)


def log_cpm(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """AVICI's standardisation of count data, as the simulator's `standardize = "log_cpm"`
    (engine.scm.technical.log_cpm) in NumPy: log2 counts per million of each row's non-zero
    values, minus their smallest and over their standard deviation in the observational rows;
    zeros (and all-zero rows) at 0."""
    values = np.asarray(values, np.float64)
    if (values < 0).any():
        i, j = np.argwhere(values < 0)[0]
        raise InferError(f"counts standardisation needs non-negative counts; row {i + 1}, column "
                         f"{j + 1} holds {values[i, j]:g}")
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(values > 0, np.log2(values / values.sum(1, keepdims=True) * 1e6), np.nan)
    ref = v[~mask.any(1)]
    seen = np.isfinite(ref).any()
    shift = np.nanmin(ref) if seen else 0.0
    spread = np.nanstd(ref) if seen else 1.0
    spread = spread if spread > 0 else 1.0
    return np.where(np.isnan(v), 0.0, (v - shift) / spread)


def standardise(values: np.ndarray, mask: np.ndarray, counts: bool = False) -> np.ndarray:
    """(x - mean) / std per variable over the observational rows (no intervention at all), in
    float64 so that values near float32's limit do not overflow; a variable with zero spread
    keeps scale 1. `counts`: count data, first through `log_cpm` (as a model trained on
    `standardize = "log_cpm"` data saw them; the models' own per-variable scaling undoes the
    z-score)."""
    obs = ~mask.any(1)
    if obs.sum() < 2:
        raise InferError("need at least 2 observational rows (rows with no intervention) to standardise")
    values = log_cpm(values, mask) if counts else np.asarray(values, np.float64)
    loc = values[obs].mean(0)
    sd = values[obs].std(0)
    sd = np.where(sd > 0, sd, 1.0)
    z = (values - loc) / sd
    if not (np.abs(z) <= F32_MAX).all():
        raise InferError("a value is too many standard deviations from its observational mean for float32")
    return z.astype(np.float32)


def inputs(data, interventions=None) -> tuple[Table, np.ndarray]:
    """The data table and its bool intervention mask, checked for what the model cannot use
    (under 2 variables or 2 observational rows, a column without observational spread);
    cheap, so callers can check before loading a model."""
    table = _table(data, "data")
    masks = None if interventions is None else _table(interventions, "interventions")
    where = table.source or "data"
    values = np.asarray(table.values)
    if values.ndim != 2 or values.shape[1] != len(table.names):
        raise InferError(f"{where}: values of shape {values.shape} do not match {len(table.names)} names")
    if not np.isfinite(values).all():
        raise InferError(f"{where}: values must be finite numbers (found nan or inf)")
    if len(table.names) < 2:
        raise InferError(f"{where}: only 1 variable ({table.names[0]}); causal structure needs at least 2")
    mask = align_mask(table, masks)
    obs = ~mask.any(1)
    if obs.sum() < 2:
        if not mask.any():
            raise InferError(f"{where}: only {len(obs)} data row; need at least 2 (observational rows, to standardise)")
        raise InferError(
            f"{masks.source or 'intervention mask'}: {int(obs.sum())} of {len(obs)} rows are observational "
            "(no intervention); need at least 2 to standardise"
        )
    x = values[obs]
    constant = [n for n, col in zip(table.names, x.T) if (col == col[0]).all()]
    if constant:
        raise InferError(
            f"{where}: column {_show(constant[0])} is constant over the {len(x)} observational rows; "
            "a variable without spread tells nothing about causal structure, drop it"
        )
    return table, mask


def target_index(data: Table, target: str | int) -> int:
    """The column of `target` (a name, or an index from Python)."""
    names = data.names
    if isinstance(target, int) and not isinstance(target, bool) and 0 <= target < len(names):
        return target
    if target in names:
        return names.index(target)
    where = f" of {data.source}" if data.source else ""
    listed = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
    raise InferError(f"unknown target {_show(str(target))}{suggest(str(target), list(names))}; variables{where}: {listed}")
