"""chaosgd.tools.bench.ensembles: a tiny run gives one row for the single model and one per
ensemble size."""

import json

from support.bench import run_bench


def test_ensembles_rows(tmp_path):
    argv = ["ensembles", "--hidden", "3", "--steps", "20", "--eps-counts", "1", "2"]
    argv += ["--dtype", "float64", "--repeats", "1", "--threads", "1"]
    rc, out, _ = run_bench(argv + ["--json", str(tmp_path / "rows.json")])
    assert rc == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [(r["what"], r["members"]) for r in rows] == [
        ("one model", 1),
        ("ensemble (mlp)", 6),
        ("ensemble (mlp)", 11),
    ]
    assert rows[0]["n_params"] == 256 * 3 + 3 + 3 * 10 + 10
    assert all(r["median_s"] > 0 for r in rows)
    assert rows[2]["ratio"] == rows[2]["median_s"] / rows[0]["median_s"]
    assert "ensemble (mlp)" in out
