"""`acbo infer` on bad inputs: every one exits 2 with one `infer: ` line naming the file, never an
internal error, a traceback or a nan probability; and a few good inputs that used to go wrong."""

import csv
import os
import re

import networkx as nx
import numpy as np
import pytest
from typer.testing import CliRunner

from engine.cli import app

GOOD = "A,B,C\n1,2,3\n2,1,5\n0,4,4\n3,3,1\n"
MASK = "A,B,C\n0,0,0\n0,0,0\n0,1,0\n0,0,0\n"
DIR = object()  # a folder instead of a file


def _data(rows: str) -> str:
    return "A,B,C\n" + rows


def _mask(rows: str) -> str:
    return "A,B,C\n" + rows


def run_dir(registry):
    return next((registry / "smoke").glob("*/model.eqx")).parent


# id, files written in the working folder (data.csv is GOOD unless given), arguments after RUN,
# exit code, the message after "infer: " (exact text, or a compiled regex for a full match).
CASES = [
    # the data file itself
    ("missing-file", {}, ["nope.csv"], 2, "nope.csv: data file does not exist"),
    ("directory", {"dir.csv": DIR}, ["dir.csv"], 2, "dir.csv: is a directory; expected a CSV file of data"),
    ("latin-1", {"data.csv": "A,Bé,C\n1,2,3\n".encode("latin-1")}, ["data.csv"], 2,
     "data.csv: not UTF-8 text (byte 0xe9 on line 1); save it as UTF-8 CSV"),
    ("utf-16", {"data.csv": GOOD.encode("utf-16")}, ["data.csv"], 2,
     "data.csv: not UTF-8 text (byte 0xff on line 1); save it as UTF-8 CSV"),
    ("binary", {"data.csv": bytes(range(256)) * 4}, ["data.csv"], 2,
     "data.csv: not UTF-8 text (byte 0x80 on line 2); save it as UTF-8 CSV"),
    ("nul-bytes", {"data.csv": b"A,B\x00,C\n1,2,3\n"}, ["data.csv"], 2,
     "data.csv: binary data (NUL bytes), not a CSV text file"),
    ("empty", {"data.csv": ""}, ["data.csv"], 2, "data.csv: empty file; expected a header row of variable names"),
    ("blank-lines", {"data.csv": "\n\n \n"}, ["data.csv"], 2,
     "data.csv: empty file; expected a header row of variable names"),
    ("header-only", {"data.csv": "A,B,C\n"}, ["data.csv"], 2, "data.csv: no data rows below the header"),
    ("duplicate-name", {"data.csv": "A,B,A\n1,2,3\n"}, ["data.csv"], 2,
     "data.csv:1: variable name 'A' appears more than once in the header"),
    ("duplicate-after-strip", {"data.csv": "A, B,B \n1,2,3\n"}, ["data.csv"], 2,
     "data.csv:1: variable name 'B' appears more than once in the header"),
    ("empty-name", {"data.csv": "A,,C\n1,2,3\n"}, ["data.csv"], 2,
     "data.csv:1: column 2 has no name; every column needs a variable name"),
    ("trailing-comma-header", {"data.csv": "A,B,C,\n1,2,3,\n"}, ["data.csv"], 2,
     "data.csv:1: column 4 has no name; every column needs a variable name"),
    ("line-break-in-name", {"data.csv": '"A\nX",B,C\n1,2,3\n'}, ["data.csv"], 2,
     "data.csv:1: variable name 'A\\nX' contains a control character (a line break?)"),
    ("no-header", {"data.csv": "0.5,1.5,2\n1,2,3\n"}, ["data.csv"], 2,
     "data.csv:1: the first row holds numbers, not variable names; add a header row"),
    ("unclosed-quote", {"data.csv": _data('1,"2,3\n4,5,6\n')}, ["data.csv"], 2,
     "data.csv:3: not valid CSV (unexpected end of data; an opening quote is never closed?)"),
    ("ragged-short", {"data.csv": _data("1,2,3\n4,5\n")}, ["data.csv"], 2,
     "data.csv:3: 2 cells but the header has 3 columns"),
    ("ragged-long", {"data.csv": _data("1,2,3\n\n4,5,6,7\n")}, ["data.csv"], 2,
     "data.csv:4: 4 cells but the header has 3 columns"),
    ("text-cell", {"data.csv": _data("1,abc,3\n")}, ["data.csv"], 2, "data.csv:2: column 'B': 'abc' is not a number"),
    ("decimal-comma", {"data.csv": "A;B;C\n1,5;2;3\n"}, ["data.csv"], 2,
     "data.csv:1: the header is one column 'A;B;C'; separate cells with commas"),
    ("empty-cell", {"data.csv": _data("1,2,3\n4,,6\n")}, ["data.csv"], 2,
     "data.csv:3: column 'B': empty cell; every cell needs a number"),
    ("nan-cell", {"data.csv": _data("1,2,3\n4,nan,6\n")}, ["data.csv"], 2,
     "data.csv:3: column 'B': nan is not a finite number"),
    ("inf-cell", {"data.csv": _data("1,2,-inf\n")}, ["data.csv"], 2,
     "data.csv:2: column 'C': -inf is not a finite number"),
    ("beyond-float32", {"data.csv": _data("1,2,3\n4,5,5e38\n")}, ["data.csv"], 2,
     "data.csv:3: column 'C': 5e38 is beyond float32's range (±3.403e+38); rescale the column"),
    ("beyond-float32-negative", {"data.csv": _data("-1e39,2,3\n")}, ["data.csv"], 2,
     "data.csv:2: column 'A': -1e39 is beyond float32's range (±3.403e+38); rescale the column"),
    ("beyond-float64", {"data.csv": _data("1,1e400,3\n")}, ["data.csv"], 2,
     "data.csv:2: column 'B': 1e400 is beyond float32's range (±3.403e+38); rescale the column"),
    ("constant-column", {"data.csv": _data("1,7,3\n2,7,1\n3,7,0\n")}, ["data.csv"], 2,
     "data.csv: column 'B' is constant over the 3 observational rows; "
     "a variable without spread tells nothing about causal structure, drop it"),
    ("one-variable", {"data.csv": "A\n1\n2\n3\n"}, ["data.csv"], 2,
     "data.csv: only 1 variable (A); causal structure needs at least 2"),
    ("one-row", {"data.csv": _data("1,2,3\n")}, ["data.csv"], 2,
     "data.csv: only 1 data row; need at least 2 (observational rows, to standardise)"),
    # the intervention mask
    ("mask-missing", {}, ["data.csv", "--interventions", "nomask.csv"], 2, "nomask.csv: interventions file does not exist"),
    ("mask-directory", {"m": DIR}, ["data.csv", "--interventions", "m"], 2,
     "m: is a directory; expected a CSV file of interventions"),
    ("mask-latin-1", {"mask.csv": "A,B,C\n0,0,0\n# é\n".encode("latin-1")}, ["data.csv", "--interventions", "mask.csv"], 2,
     "mask.csv: not UTF-8 text (byte 0xe9 on line 3); save it as UTF-8 CSV"),
    ("mask-header", {"mask.csv": "A,B,CC\n0,0,0\n0,0,0\n0,0,0\n0,0,0\n"}, ["data.csv", "--interventions", "mask.csv"], 2,
     "mask.csv: missing column(s) C; extra column(s) CC (did you mean 'C'?) (its header must match the data's)"),
    ("mask-rows", {"mask.csv": _mask("0,0,0\n0,0,0\n0,0,0\n")}, ["data.csv", "--interventions", "mask.csv"], 2,
     "mask.csv: intervention mask has 3 rows but the data have 4"),
    ("mask-ragged", {"mask.csv": _mask("0,0,0\n0,0\n0,0,0\n0,0,0\n")}, ["data.csv", "--interventions", "mask.csv"], 2,
     "mask.csv:3: 2 cells but the header has 3 columns"),
    ("mask-2", {"mask.csv": _mask("0,0,0\n\n0,0,2\n0,0,0\n0,0,0\n")}, ["data.csv", "--interventions", "mask.csv"], 2,
     "mask.csv:4: column 'C': 2 is not 0 or 1"),
    ("mask-minus-1", {"mask.csv": _mask("-1,0,0\n0,0,0\n0,0,0\n0,0,0\n")}, ["data.csv", "--interventions", "mask.csv"], 2,
     "mask.csv:2: column 'A': -1 is not 0 or 1"),
    ("mask-half", {"mask.csv": _mask("0,0,0\n0,0.5,0\n0,0,0\n0,0,0\n")}, ["data.csv", "--interventions", "mask.csv"], 2,
     "mask.csv:3: column 'B': 0.5 is not 0 or 1"),
    ("mask-text", {"mask.csv": _mask("0,0,0\n0,0,0\nyes,0,0\n0,0,0\n")}, ["data.csv", "--interventions", "mask.csv"], 2,
     "mask.csv:4: column 'A': 'yes' is not a number"),
    ("mask-all-interventional", {"mask.csv": _mask("1,0,0\n0,1,0\n0,0,1\n1,0,0\n")},
     ["data.csv", "--interventions", "mask.csv"], 2,
     "mask.csv: 0 of 4 rows are observational (no intervention); need at least 2 to standardise"),
    ("mask-one-observational", {"mask.csv": _mask("1,0,0\n0,0,0\n0,0,1\n1,0,0\n")},
     ["data.csv", "--interventions", "mask.csv"], 2,
     "mask.csv: 1 of 4 rows are observational (no intervention); need at least 2 to standardise"),
    # --target
    ("target-typo", {}, ["data.csv", "--target", "BB"], 2,
     "unknown target 'BB' (did you mean 'B'?); variables of data.csv: A, B, C"),
    ("target-unknown", {}, ["data.csv", "--target", "Zebra"], 2, "unknown target 'Zebra'; variables of data.csv: A, B, C"),
    # outputs, checked before anything is read
    ("output-no-folder", {}, ["data.csv", "-o", "nodir/out.csv"], 2, "nodir/out.csv: folder nodir does not exist"),
    ("output-directory", {"outdir": DIR}, ["data.csv", "-o", "outdir"], 2,
     "outdir: is a directory; give a file name for the output"),
    ("graphml-directory", {"outdir": DIR}, ["data.csv", "--graphml", "outdir"], 2,
     "outdir: is a directory; give a file name for the output"),
    ("graphml-no-folder", {}, ["data.csv", "--graphml", "nodir/g.graphml"], 2, "nodir/g.graphml: folder nodir does not exist"),
    ("output-special-file", {}, ["data.csv", "-o", "/dev/null"], 2, "/dev/null: not a regular file; give a file name for the output"),
    ("output-is-data", {}, ["data.csv", "-o", "./data.csv"], 2, "data.csv: is also the data file; choose another output file"),
    ("output-is-graphml", {}, ["data.csv", "-o", "g.out", "--graphml", "g.out"], 2,
     "g.out: is also the --graphml file; choose another output file"),
    ("output-before-data", {"data.csv": ""}, ["data.csv", "-o", "nodir/out.csv"], 2,
     "nodir/out.csv: folder nodir does not exist"),
    # the run
    ("run-missing", {}, ["data.csv"], 2,
     re.compile(r"not-a-run: neither a run folder \(with resolved\.json\), a spec with runs in \S+, nor a shipped "
                r"model; models: smoke(, [\w.-]+)*")),  # and any shipped ones
    ("run-typo", {}, ["data.csv"], 2,
     re.compile(r"smok: neither a run folder \(with resolved\.json\), a spec with runs in \S+, nor a shipped model "
                r"\(did you mean 'smoke'\?\)")),
    ("data-before-run", {"data.csv": ""}, ["data.csv"], 2, "data.csv: empty file; expected a header row of variable names"),
    # the last line of defence: representable values so extreme that the model overflows
    ("nonfinite-probabilities", {"data.csv": _data("1,2,3\n2,1,5\n0,4,4\n1e30,3,1\n"), "mask.csv": _mask("0,0,0\n0,0,0\n0,0,0\n1,0,0\n")},
     ["data.csv", "--interventions", "mask.csv", "-o", "out.csv"], 2,
     "data.csv: the model gave non-finite probabilities for these data (extreme values or outliers?); "
     "check and rescale the data"),
]


def _invoke(run, args, registry):
    return CliRunner().invoke(app, ["infer", str(run), *map(str, args), "--registry", str(registry)])


def _clean(res) -> None:
    assert "internal error" not in res.output and "Traceback" not in res.output, res.output
    assert "nan" not in res.stdout.lower(), res.stdout


def test_corpus_is_large():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case, files, args, code, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input(smoke_registry, tmp_path, monkeypatch, case, files, args, code, message):
    monkeypatch.chdir(tmp_path)
    for name, content in {"data.csv": GOOD, "mask.csv": MASK, **files}.items():
        if content is DIR:
            (tmp_path / name).mkdir()
        elif isinstance(content, bytes):
            (tmp_path / name).write_bytes(content)
        else:
            (tmp_path / name).write_text(content, encoding="utf-8")
    before = sorted(os.listdir(tmp_path))
    run = {"run-missing": "not-a-run", "run-typo": "smok", "data-before-run": "not-a-run"}.get(case, run_dir(smoke_registry))
    res = _invoke(run, args, smoke_registry)
    _clean(res)
    assert res.exit_code == code, res.output
    assert res.stdout == ""
    lines = res.output.splitlines()
    assert len(lines) == 1, res.output
    if isinstance(message, str):
        assert lines[0] == f"infer: {message}"
    else:
        assert lines[0].startswith("infer: ") and message.fullmatch(lines[0][len("infer: "):]), lines[0]
    assert sorted(os.listdir(tmp_path)) == before  # nothing written, no temporary left behind


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_output_folder(smoke_registry, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text(GOOD)
    (tmp_path / "ro").mkdir(mode=0o555)
    res = _invoke(run_dir(smoke_registry), ["data.csv", "-o", "ro/out.csv"], smoke_registry)
    _clean(res)
    assert res.exit_code == 2 and res.output == "infer: ro/out.csv: folder ro is not writable\n"


def _write(path, names, x):
    with open(path, "w", newline="", encoding="utf-8-sig") as f:  # with a BOM, as Excel writes
        w = csv.writer(f)
        w.writerow(names)
        w.writerows([repr(float(v)) for v in row] for row in x)
    return path


def _matrix(path):
    rows = list(csv.reader(open(path, encoding="utf-8")))
    return rows[0][1:], np.array([[float(v) for v in r[1:]] for r in rows[1:]])


def test_huge_but_representable_values(smoke_registry, tmp_path):
    """1e30-scale data (float32 std overflowed before) give the same finite probabilities as the
    same data in ordinary units; graph and parent outputs go to files atomically."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=30)
    x = np.stack([a, 2 * a + 0.5 * rng.normal(size=30), rng.normal(size=30)], 1)
    names = ["A", "B,2", "C"]  # a comma in a name must survive the CSV output
    run = run_dir(smoke_registry)
    graphs = []
    for scale in (1.0, 1e30, 3e38 / np.abs(x).max()):  # the last reaches 3e38, near float32's limit
        data = _write(tmp_path / f"x{scale:g}.csv", names, x * scale)
        out, gml = tmp_path / f"g{scale:g}.csv", tmp_path / f"g{scale:g}.graphml"
        out.write_text("old")  # replaced, not appended to
        res = _invoke(run, [data, "-o", out, "--graphml", gml], smoke_registry)
        _clean(res)
        assert res.exit_code == 0, res.output
        header, probs = _matrix(out)
        assert header == names and np.isfinite(probs).all() and ((0 <= probs) & (probs <= 1)).all()
        g = nx.read_graphml(gml)
        assert set(g.nodes) == set(names)
        for u, v, attr in g.edges(data=True):
            assert attr["prob"] == pytest.approx(probs[names.index(u), names.index(v)], abs=1e-6)
        graphs.append(probs)
    np.testing.assert_allclose(graphs[1], graphs[0], atol=1e-5)
    np.testing.assert_allclose(graphs[2], graphs[0], atol=1e-5)

    out = tmp_path / "parents.csv"
    res = _invoke(run, [tmp_path / "x1e+30.csv", "--target", "C", "-o", out], smoke_registry)  # Excel's BOM too
    _clean(res)
    assert res.exit_code == 0, res.output
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["parent", "probability"] and [r[0] for r in rows[1:]] == ["A", "B,2"]
    assert [float(r[1]) for r in rows[1:]] == pytest.approx(graphs[0][:2, 2], abs=1e-5)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left
