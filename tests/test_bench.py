"""chaosgd.bench tangent: a tiny run of the command; low-rank and dense tangent updates agree."""

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
