"""chaosgd.tools.bench.tangent: low-rank and dense tangent updates agree in a tiny run."""

import json

from support.bench import run_bench


def test_tangent_agreement(tmp_path):
    argv = ["tangent", "--hidden", "2", "--steps", "3", "--no-readout", "--threads", "1"]
    rc, out, _ = run_bench(argv + ["--json", str(tmp_path / "rows.json")])
    assert rc == 0
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("operation"))
    end = lines[head].index("agreement") + len("agreement")
    cells = [line[end - 9 : end].strip() for line in lines[head + 2 :]]
    values = [float(c) for c in cells if c not in ("-", "ref")]
    assert len(values) == 3  # step_sgd plain and through the basis, and after the fold
    assert all(v < 1e-10 for v in values), cells
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert rows[0]["op"] == "step_sgd (low-rank)" and rows[0]["n_params"] == 544
    assert rows[1]["op"] == "step_sgd (basis)" and rows[1]["agreement"] < 1e-10
    assert not any(r["op"].startswith("readout") for r in rows)
