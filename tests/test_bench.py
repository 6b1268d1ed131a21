"""chaosgd.bench: tiny runs of the commands; low-rank and dense tangent updates agree."""

import contextlib
import io
import json

import torch

from chaosgd import bench


def test_tangent_agreement(tmp_path):
    threads = torch.get_num_threads()
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            rc = bench.main(
                [
                    "tangent",
                    "--hidden",
                    "2",
                    "--steps",
                    "3",
                    "--no-readout",
                    "--threads",
                    "1",
                    "--json",
                    str(tmp_path / "rows.json"),
                ]
            )
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    lines = buf.getvalue().splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("operation"))
    end = lines[head].index("agreement") + len("agreement")
    cells = [line[end - 9 : end].strip() for line in lines[head + 2 :]]
    values = [float(c) for c in cells if c not in ("-", "ref")]
    assert len(values) == 2  # step_sgd, and after the fold
    assert all(v < 1e-10 for v in values), cells
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert rows[0]["op"] == "step_sgd (low-rank)" and rows[0]["n_params"] == 544
    assert not any(r["op"].startswith("readout") for r in rows)


def test_ensembles_rows(tmp_path):
    threads = torch.get_num_threads()
    buf = io.StringIO()
    argv = ["ensembles", "--hidden", "3", "--steps", "20", "--eps-counts", "1", "2"]
    argv += ["--dtype", "float64", "--repeats", "1", "--threads", "1"]
    try:
        with contextlib.redirect_stdout(buf):
            rc = bench.main(argv + ["--json", str(tmp_path / "rows.json")])
    finally:
        torch.set_num_threads(threads)
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
    assert "ensemble (mlp)" in buf.getvalue()
