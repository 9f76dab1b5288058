"""engine.spec.locate: dotted key paths of a TOML document -> the line that defines them.

Each document here is also parsed by tomllib, so every located path is checked against what the
TOML actually means (a path the locator reports must exist in the parsed document).
"""

from __future__ import annotations

import tomllib

import pytest

from engine.spec.locate import line_of, locate_lines


def _exists(doc, path: tuple) -> bool:
    node = doc
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return False
    return True


def locate(text: str) -> dict[tuple, int]:
    """locate_lines, after checking the text is TOML and every located path is in it."""
    doc = tomllib.loads(text)
    lines = locate_lines(text)
    phantom = [p for p in lines if not _exists(doc, p)]
    assert not phantom, f"located paths that the document does not define: {phantom}"
    return lines


def test_tables_and_top_level_keys():
    text = """\
version = 1
name = "x"

[scm]
n_obs = 60

[train]
steps = 40
batch_size = 8
"""
    assert locate(text) == {
        ("version",): 1,
        ("name",): 2,
        ("scm",): 4,
        ("scm", "n_obs"): 5,
        ("train",): 7,
        ("train", "steps"): 8,
        ("train", "batch_size"): 9,
    }


def test_dotted_keys_and_dotted_headers():
    text = """\
a.b.c = 1
"quoted.key" = 2
site."google.com" = true

[x.y]
p.q = 3
"""
    lines = locate(text)
    assert lines[("a", "b", "c")] == 1
    assert lines[("quoted.key",)] == 2
    assert lines[("site", "google.com")] == 3
    assert lines[("x", "y")] == 5
    assert lines[("x", "y", "p", "q")] == 6


def test_arrays_of_tables_are_indexed():
    text = """\
[[gates]]
metric = "speedup"
min = 1.0

[[gates]]
group = "week2"
metric = "auroc"

[[gates]]
metric = "f1"
"""
    lines = locate(text)
    assert lines[("gates",)] == 1
    assert [lines[("gates", i)] for i in range(3)] == [1, 5, 9]
    assert lines[("gates", 0, "min")] == 3
    assert lines[("gates", 1, "group")] == 6
    assert lines[("gates", 1, "metric")] == 7
    assert lines[("gates", 2, "metric")] == 10
    assert ("gates", 3) not in lines


def test_sub_tables_and_nested_arrays_of_tables_belong_to_the_last_element():
    text = """\
[[fruit]]
name = "apple"
[fruit.physical]
color = "red"
[[fruit.variety]]
name = "fuji"
[[fruit]]
name = "banana"
[[fruit.variety]]
name = "plantain"
[[fruit.variety]]
name = "cavendish"
"""
    lines = locate(text)
    assert lines[("fruit", 0, "physical", "color")] == 4
    assert lines[("fruit", 0, "variety", 0, "name")] == 6
    assert lines[("fruit", 1, "name")] == 8
    assert lines[("fruit", 1, "variety", 0, "name")] == 10
    assert lines[("fruit", 1, "variety", 1, "name")] == 12


def test_inline_tables_nested_in_inline_tables():
    text = """\
[scm]
interventions = { kind = "hard", value = { dist = "uniform", low = -5.0, high = 5.0 }, rows_per_node = 2 }
n_nodes = { low = 3, high = 5 }
"""
    lines = locate(text)
    for key in ("kind", "value", "rows_per_node"):
        assert lines[("scm", "interventions", key)] == 2
    for key in ("dist", "low", "high"):
        assert lines[("scm", "interventions", "value", key)] == 2
    assert lines[("scm", "n_nodes", "high")] == 3
    # `rows_per_node` follows the nested table: it must not be filed under `value`.
    assert ("scm", "interventions", "value", "rows_per_node") not in lines


def test_multi_line_arrays_of_inline_tables():
    text = """\
graphs = [
  { kind = "erdos_renyi", edges_per_node = 1.0 },

  { kind = "scale_free", m = 2 },
  { kind = "chain", weight = 0.5 }, { kind = "fork" }
]
values = [1, 2,
  3]
after = 1
"""
    lines = locate(text)
    assert lines[("graphs",)] == 1
    assert lines[("graphs", 0)] == 2
    assert lines[("graphs", 0, "edges_per_node")] == 2
    assert lines[("graphs", 1)] == 4
    assert lines[("graphs", 1, "kind")] == 4
    assert lines[("graphs", 1, "m")] == 4
    assert lines[("graphs", 2, "weight")] == 5
    assert lines[("graphs", 3, "kind")] == 5
    assert [lines[("values", i)] for i in range(3)] == [7, 7, 8]
    assert lines[("after",)] == 9


def test_comments_and_strings_with_brackets_braces_and_hashes():
    text = """\
# [not_a_table]
# key = 1
name = "a [b] {c} # d"  # trailing comment with [ and {
path = 'C:\\dir\\[x]'
esc = "quote \\" [ inside"
arr = [
  "]", # a comment with ] inside the array
  { k = "}", m = "#" },
]
description = \"\"\"
[fake_table]
fake = { x = 1 }
\"\"\"
[real]
x = 1
"""
    lines = locate(text)
    assert ("not_a_table",) not in lines and ("key",) not in lines
    assert lines[("name",)] == 3
    assert lines[("path",)] == 4
    assert lines[("esc",)] == 5
    assert lines[("arr", 0)] == 7
    assert lines[("arr", 1, "k")] == 8
    assert lines[("arr", 1, "m")] == 8
    assert ("arr", 2) not in lines
    assert lines[("description",)] == 10
    assert ("fake_table",) not in lines and ("fake",) not in lines
    assert lines[("real",)] == 14
    assert lines[("real", "x")] == 15


def test_first_definition_wins_and_headers_with_comments():
    text = """\
[train]   # the recipe
steps = 1
[ train . optimizer ]
lr = 0.1
"""
    lines = locate(text)
    assert lines[("train",)] == 1
    assert lines[("train", "optimizer")] == 3
    assert lines[("train", "optimizer", "lr")] == 4


def test_the_smoke_spec_is_located_exactly():
    from pathlib import Path

    text = (Path(__file__).parents[1] / "specs" / "smoke.toml").read_text()
    lines = locate(text)
    numbered = {line.split("=")[0].strip(): n for n, line in enumerate(text.splitlines(), 1)}
    assert lines[("train", "steps")] == numbered["steps"]
    assert lines[("scm", "interventions", "value", "dist")] == numbered["interventions"]
    assert lines[("gates", 1, "metric")] == numbered["metric"]


@pytest.mark.parametrize(
    "path, expected",
    [
        (("train", "optimizer", "lr"), 3),  # defined
        (("train", "optimizer", "lrr"), 3),  # unknown key: its table's line
        (("train", "nope", "deeper"), 1),  # the table header
        (("gates", 0, "metric"), 6),  # a key of an array-of-tables element
        (("gates", 0, "min"), 5),  # a key the element lacks: the element's header
        (("gates", 7, "min"), 5),  # an element that does not exist: the array
        (("missing",), None),
        ((), None),
    ],
)
def test_line_of_falls_back_to_the_longest_known_prefix(path, expected):
    text = """\
[train]
steps = 1
optimizer = { kind = "adam", lr = 0.1 }

[[gates]]
metric = "speedup"
"""
    assert line_of(locate(text), path) == expected


def test_evaluation_stages_and_their_override_tables():
    text = """\
[evaluation]
n_boot = 10

[[evaluation.stages]]
name = "a"

[[evaluation.stages]]
name = "b"
scm = { mechanism = { kind = "rff" }, n_obs = 5 }

[evaluation.stages.expert]
n_trials = 2
"""
    lines = locate(text)
    assert [lines[("evaluation", "stages", i, "name")] for i in range(2)] == [5, 8]
    assert lines[("evaluation", "stages", 1, "scm", "mechanism", "kind")] == 9
    assert lines[("evaluation", "stages", 1, "scm", "n_obs")] == 9
    assert lines[("evaluation", "stages", 1, "expert", "n_trials")] == 12
