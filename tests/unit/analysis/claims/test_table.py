"""The claims table: every claim, ``not run`` where the config produced nothing to test it with,
and its Markdown and HTML renderings."""

from __future__ import annotations

import math

from chaosgd.analysis.claims.table import check_claims, html, markdown, provenance

from support.claims import NOT_RUN, fake_run


def test_claims_not_run_without_matching_runs(tmp_path):
    runs = [fake_run(tmp_path, "sgd0", "sgd", 0)]
    df = check_claims(tmp_path, {"e": runs}, {}, {}, 0.1)
    assert sorted(set(df["claim"])) == list(range(1, 12))
    assert set(df["verdict"]) == {NOT_RUN}
    assert (df["threshold"] != "").all() and (df["detail"] != "").all()
    table = markdown(df, "context")
    assert table.startswith("context") and "| threshold | verdict |" in table
    assert "| 5 | finite-time exponents" in table


def test_provenance_and_html_name_the_runs_and_keep_the_details_apart(tmp_path):
    runs = [fake_run(tmp_path, f"sgd{s}", "sgd", s) for s in range(2)]
    context = provenance(tmp_path, runs, "paper.yaml")
    assert context.startswith("Produced by config paper.yaml: 2 training runs on cpu (x)")
    df = check_claims(tmp_path, {"e": runs}, {}, {}, 0.1)
    page = html(df, context)
    assert page.startswith(f"<p>{context}</p>\n<table") and "<h3>Criteria and details</h3>" in page
    main, details = page.split("<h3>Criteria and details</h3>")
    assert "<th>verdict</th>" in main and "<th>detail</th>" not in main
    assert "<th>detail</th>" in details and "<th>verdict</th>" not in details
    assert math.isnan(df["value"].iloc[0]) and "<td>nan</td>" not in main  # not run: blank
