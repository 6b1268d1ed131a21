"""The claims table: every claim, ``not run`` where the config produced nothing to test it with,
and its Markdown and HTML renderings."""

from __future__ import annotations

import math

import pytest

from chaosgd.analysis.claims.table import check_claims, html, markdown, provenance

from support.claims import NOT_RUN, SUPPORTED, fake_run


def test_claims_not_run_without_matching_runs(tmp_path):
    runs = [fake_run(tmp_path, "sgd0", "sgd", 0)]
    df = check_claims(tmp_path, {"e": runs}, {}, {}, 0.1)
    assert sorted(set(df["claim"]))[:15] == list(range(1, 16))
    assert set(df["verdict"]) == {NOT_RUN}
    assert (df["threshold"] != "").all() and (df["detail"] != "").all()
    table = markdown(df, "context")
    assert table.startswith("context")
    assert "| value | interval | seed values | n | threshold | verdict |" in table
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


def negative_pruning(root, gaps):
    """SGD and CGD-negative runs, one per gap (seed i: CGD ``gaps[i]`` below SGD), listed in
    reverse seed order: the table must list the seeds in seed order all the same."""
    runs = []
    for seed, gap in reversed(list(enumerate(gaps))):
        runs.append(fake_run(root, f"sgd{seed}", "sgd", seed, acc=0.9))
        runs.append(fake_run(root, f"neg{seed}", "cgd-negative", seed, acc=0.9 - gap, loss=1.0))
    return runs


def test_a_row_shows_the_interval_its_verdict_used(tmp_path):
    """Two seeds, 0.3 and 0.5 below SGD: the t interval (0.4 ± 1.27) crosses claim 1's 0.1, the
    seed range the verdict read does not; the table shows the latter, named."""
    df = check_claims(tmp_path, {"e": negative_pruning(tmp_path, [0.3, 0.5])}, {}, {}, 0.1)
    row = df[df["claim"] == 1].iloc[0]
    assert row["verdict"] == SUPPORTED and row["ci_low"] < 0.1
    assert row["interval"] == "seed range"
    assert (row["low"], row["high"]) == (pytest.approx(0.3), pytest.approx(0.5))
    assert row["seed_values"] == "0.3, 0.5"
    table = markdown(df)
    line = next(x for x in table.splitlines() if x.startswith("| 1 |"))
    assert (
        "| 0.4 | [0.3, 0.5] (seed range) | 0.3, 0.5 | 2 | lower end ≥ 0.1 | **supported** |" in line
    )
    assert f"{row['ci_low']:.3g}" not in line
    assert "[0.3, 0.5] (seed range)" in html(df, "c")


def test_three_seeds_show_the_confidence_interval(tmp_path):
    df = check_claims(tmp_path, {"e": negative_pruning(tmp_path, [0.4, 0.41, 0.39])}, {}, {}, 0.1)
    row = df[df["claim"] == 1].iloc[0]
    assert row["interval"] == "95% CI" and (row["low"], row["high"]) == (
        row["ci_low"],
        row["ci_high"],
    )
    shown = f"[{row['low']:.3g}, {row['high']:.3g}] (95% CI)"
    assert shown == "[0.375, 0.425] (95% CI)"
    assert f"| 0.4 | {shown} | 0.4, 0.41, 0.39 | 3 |" in markdown(df)
    assert f"<td>{shown}</td>" in html(df, "c")


def test_html_escapes_every_text(tmp_path):
    df = check_claims(tmp_path, {"e": negative_pruning(tmp_path, [0.3, 0.5])}, {}, {}, 0.1)
    df.loc[0, "statement"] = "<b>bold</b>"
    df.loc[0, "detail"] = "<script>x</script>"
    page = html(df, "a <i>context</i>")
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>" not in page
    assert "&lt;script&gt;" in page and "<script>" not in page
    assert page.startswith("<p>a &lt;i&gt;context&lt;/i&gt;</p>")


def test_markdown_cells_keep_a_norms_bars(tmp_path):
    """Claim 13's quantity writes max(|λmin|, λmax): its bars must not split the row."""
    df = check_claims(tmp_path, {"e": [fake_run(tmp_path, "sgd0", "sgd", 0)]}, {}, {}, 0.1)
    line = next(x for x in markdown(df).splitlines() if x.startswith("| 13 |"))
    assert r"max(\|λmin\|, λmax)" in line
    assert len(line.replace(r"\|", "").split("|")) == 12  # the 10 columns' cells


def test_html_shows_config_names_paths_and_experiments_as_text(tmp_path):
    """The provenance line names the config files (any path the user gave) and each row its
    experiment: markup in them reaches the page escaped, never as tags."""
    runs = negative_pruning(tmp_path, [0.3, 0.5])
    name = "cfg/<script>alert(1)</script> *x* `y` a_.yaml"
    experiment = "<b>exp_</b>"
    df = check_claims(tmp_path, {experiment: runs}, {}, {}, 0.1)
    page = html(df, provenance(tmp_path, runs, name))
    assert "<script" not in page and "<b>" not in page
    assert "cfg/&lt;script&gt;alert(1)&lt;/script&gt; *x* `y` a_.yaml" in page
    assert "<td>&lt;b&gt;exp_&lt;/b&gt;</td>" in page
