"""The Snakemake report's captions: text from the config reaches them as text, never as markup.

Snakemake renders a caption file with Jinja2 (no autoescaping), then with reStructuredText to
HTML (docutils), and the report puts that HTML in the page as it is. These tests render the
captions the same way: a name that reStructuredText reads as markup (``exp_`` is a link to a
missing target, ``|x|`` a substitution) would show a docutils error box, and ``<script>`` would
run.
"""

from __future__ import annotations

import html
from types import SimpleNamespace

import pytest
from docutils.core import publish_parts
from docutils.utils import SystemMessage
from jinja2 import Environment

from chaosgd.planning import plan
from chaosgd.planning.config import ConfigError, validate_config

from support.workflow import REPO

CAPTIONS = REPO / "workflow" / "report"


def render(caption_file: str, **params) -> str:
    """The caption's HTML as ``snakemake --report`` makes it (snakemake.report.FileRecord);
    a docutils warning or error raises."""
    env = Environment(trim_blocks=True, lstrip_blocks=True)  # Snakemake's settings
    text = env.from_string((CAPTIONS / caption_file).read_text())
    text = text.render(snakemake=SimpleNamespace(params=SimpleNamespace(**params), config={}))
    return publish_parts(text, writer="html", settings_overrides={"halt_level": 2})["body"]


def text_of(body: str) -> str:
    """The text of a one-paragraph caption, which must hold no tag."""
    assert body.startswith("<p>") and body.endswith("</p>"), body
    inner = body[len("<p>") : -len("</p>")]
    assert "<" not in inner and ">" not in inner, inner
    return html.unescape(inner)


MARKUP = (
    "Experiment *x*: `y` <script>alert(1)</script> exp_: figB2_exp_.parquet, mean |cos(g, v)| "
    "[1]_ {{ snakemake.config }} &amp; \"q\" 's'\n.. raw:: html\n\n   <b>bold</b>"
)


def test_a_caption_comes_out_as_its_literal_text():
    assert text_of(render("figure.rst", caption=MARKUP)) == MARKUP.replace("\n", " ")


def test_a_caption_without_markup_reads_as_it_did():
    assert render("figure.rst", caption="Accuracy; lr 0.01.") == "<p>Accuracy; lr 0.01.</p>"


def figure_captions(config: dict) -> dict[str, str]:
    cfg = validate_config(config)
    runs, groups, lyapunov = plan.plan_runs(cfg)
    refs = plan.ensemble_references(cfg, runs, lyapunov)
    return {
        name: fig.caption
        for name, fig in plan.figures(runs, groups, lyapunov, refs, cfg["ensembles"]).items()
    }


def test_the_schema_keeps_markup_out_of_names_but_for_underscores():
    exp = {"dataset": "usps", "model": "mlp", "activation": "relu", "variants": ["sgd"]}
    for name in ("<script>", "*x*", "`x`", "a|b"):
        with pytest.raises(ConfigError, match="experiments"):
            validate_config({"experiments": [{**exp, "name": name}]})
    with pytest.raises(ConfigError, match="tag"):
        validate_config({"experiments": [{**exp, "name": "a", "tag": "<b>"}]})


def test_every_figure_caption_renders_its_text_with_markup_in_every_config_text():
    """Names ending in an underscore (reStructuredText links), a tag, and markup in the free
    text fields (a dataset's local_dir, the download cache), for every kind of figure: the
    caption comes out whole and literal, with no docutils message and no tag."""
    exp = {"dataset": "usps", "model": "mlp", "activation": "relu", "seeds": [0]}
    config = {
        "download_cache": "<script>alert(1)</script>_",
        "datasets": {"usps": {"local_dir": "*x* `y` <script>alert(2)</script> z_"}},
        "experiments": [
            {**exp, "name": "exp_", "variants": ["sgd", "cgd-chaotic"], "tag": "t1"},
            {**exp, "name": "b__", "variants": ["sgd"], "hidden": 8},
        ],
        "lyapunov": {"runs": [{"experiment": "exp_", "variants": ["sgd"], "seeds": [0]}]},
    }
    captions = figure_captions(config)
    assert {"exp_", "figC1_exp_", "fig3b_exp_", "b__"} <= set(captions)
    for name, caption in captions.items():
        try:
            body = render("figure.rst", caption=caption)
        except SystemMessage as exc:  # pragma: no cover - the failure's message
            pytest.fail(f"{name}: {exc}")
        assert text_of(body) == caption, name


def test_the_paper_s_captions_render_without_a_docutils_message():
    """|cos(g, v)| in App. B.2's caption was a substitution reference to nothing."""
    captions = figure_captions({})
    assert "|cos(g, v)|" in captions["figB2_fig1"]
    for name, caption in captions.items():
        assert text_of(render("figure.rst", caption=caption)) == caption, name


@pytest.mark.parametrize("caption_file", ["claims.rst", "runs.rst", "stale.rst", "workflow.rst"])
def test_the_fixed_captions_render_without_a_docutils_message(caption_file):
    body = render(caption_file)
    assert "system-message" not in body and "problematic" not in body
