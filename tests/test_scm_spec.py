"""[scm] validation: impossible or meaningless specs fail at validate time with a clear message.
No jax needed: spec models must validate instantly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from engine.spec.scm import ScmSpec

BNLEARN = Path("/work/shared/data/bnlearn")
ECOLI = BNLEARN / "ecoli70_lgbn.npz"
ER = {"kind": "erdos_renyi", "edges_per_node": 1.0}


def err(data: dict, context: dict | None = None) -> str:
    with pytest.raises(ValidationError) as e:
        ScmSpec.model_validate(data, context=context)
    return str(e.value)


def test_defaults_and_single_tables():
    s = ScmSpec.model_validate({"graphs": ER})  # a single table is a one-component mixture
    assert s.max_nodes == 8 and s.n_int == 7
    assert [m.kind for m in s.mechanism] == ["linear"] and s.noise[0].kind == "gaussian"
    assert s.interventions.kind == "hard" and s.target.kind == "random_with_parents"
    s = ScmSpec.model_validate({"graphs": [ER], "n_nodes": {"values": [5, 20], "weights": [1, 3]},
                                "interventions": {"kind": "soft", "fraction": 0.5,
                                                  "rows_per_node": 3}})
    assert s.max_nodes == 20 and s.n_int == 3 * 10


def test_impossible_specs():
    assert "more edges than a DAG of 8 nodes" in err({"graphs": {"kind": "erdos_renyi",
                                                                 "edges_per_node": 4.0}})
    assert "more edges than a DAG of 6 nodes" in err({"graphs": {"kind": "erdos_renyi",
                                                                 "edges_per_node": 3.0},
                                                      "n_nodes": {"low": 5, "high": 6}})
    # a range whose smaller graphs are capped at the complete DAG is fine
    ScmSpec.model_validate({"graphs": {"kind": "erdos_renyi", "edges_per_node": 3.0},
                            "n_nodes": {"low": 5, "high": 50}})
    assert "exactly one of edges_per_node or p" in err({"graphs": {"kind": "erdos_renyi"}})
    assert "greater than 0" in err({"graphs": [{**ER, "weight": 0}]})
    assert "m = 8" in err({"graphs": {"kind": "scale_free", "m": 8}})
    assert "watts_strogatz k = 2" in err({"graphs": {"kind": "watts_strogatz", "k": 2},
                                          "n_nodes": {"low": 4, "high": 9}})
    assert "non-negative" in err({"graphs": ER, "noise": {"kind": "laplace", "scale": -1.0}})
    assert "non-negative" in err({"graphs": ER, "noise": {
        "kind": "gaussian", "scale": {"dist": "normal", "std": 1.0}}})
    assert "high (2) must be >= low (3)" in err({"graphs": ER,
                                                     "n_nodes": {"low": 3, "high": 2}})
    assert "cannot be mixed" in err({"graphs": ER, "mechanism": [{"kind": "grn"},
                                                                 {"kind": "linear"}]})
    assert "value >= 0" in err({"graphs": ER, "mechanism": {"kind": "grn"}})
    assert "random graphs have no names" in err({"graphs": ER,
                                                 "target": {"kind": "named", "name": "X1"}})
    assert "at most one of" in err({"graphs": ER, "interventions": {"kind": "hard",
                                                                     "count": 2,
                                                                     "fraction": 0.5}})
    assert "unknown key 'edges_per_nod'" in err({"graphs": {"kind": "erdos_renyi",
                                                            "edges_per_nod": 1}})


def test_unknown_kind_is_reported_with_the_options():
    msg = err({"graphs": {"kind": "erdos_reny"}})
    assert "erdos_renyi" in msg


@pytest.mark.skipif(not ECOLI.exists(), reason="bnlearn data not present")
def test_from_file_paths_and_names(tmp_path):
    ctx = {"spec_dir": tmp_path}
    g = {"kind": "from_file", "path": str(ECOLI)}
    s = ScmSpec.model_validate({"graphs": g, "target": {"kind": "named", "name": "lacZ"}},
                               context=ctx)
    assert s.max_nodes == 46
    assert "no such file" in err({"graphs": {"kind": "from_file", "path": "nope.npz"}}, ctx)
    assert "did you mean 'lacZ'" in err({"graphs": g, "target": {"kind": "named",
                                                                 "name": "lacz"}}, ctx)
    assert "no parents" in err({"graphs": g, "target": {"kind": "named", "name": "eutG"}}, ctx)
    # Relative paths resolve against the spec's directory.
    rel = Path("..") / ECOLI.relative_to("/work")
    spec_dir = Path("/work/main")
    s = ScmSpec.model_validate({"graphs": {"kind": "from_file", "path": str(rel)}},
                               context={"spec_dir": spec_dir})
    assert s.max_nodes == 46


def test_csv_graph_and_cycles(tmp_path):
    good = tmp_path / "g.csv"
    good.write_text(",a,b,c\na,0,1,1\nb,0,0,1\nc,0,0,0\n")
    s = ScmSpec.model_validate({"graphs": {"kind": "from_file", "path": "g.csv"},
                                "target": {"kind": "named", "name": "c"}},
                               context={"spec_dir": tmp_path})
    assert s.max_nodes == 3
    bad = tmp_path / "cyc.csv"
    bad.write_text(",a,b\na,0,1\nb,1,0\n")
    assert "cycle" in err({"graphs": {"kind": "from_file", "path": "cyc.csv"}},
                          {"spec_dir": tmp_path})


def test_spec_module_does_not_import_jax():
    import subprocess

    code = ("import sys; import engine.spec.scm, engine.scm, engine.scm.files; "
            "assert 'jax' not in sys.modules, 'jax imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
