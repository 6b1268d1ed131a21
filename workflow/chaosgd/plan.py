"""Turn the validated config into jobs: the command-line arguments of each stage.

Imported by the Snakefile (``workflow/rules/common.smk``); pure functions of the config dict so
that the planning is testable without Snakemake.
"""

from __future__ import annotations

import shlex


def datasets_args(config: dict, dataset: str) -> str:
    """Arguments of ``python -m chaosgd.datasets`` for one configured dataset."""
    try:
        src = config["datasets"][dataset]
    except KeyError:
        raise ValueError(
            f"dataset {dataset!r} is not configured under 'datasets' "
            f"(configured: {sorted(config['datasets'])})"
        ) from None
    args = ["--cache-dir", f"{config['download_cache']}/{dataset}"]
    if src["local_dir"]:
        args += ["--local-dir", src["local_dir"]]
    if not src["download"]:
        args.append("--no-download")
    for url in src["mirrors"]:
        args += ["--mirror", url]
    for name, md5 in sorted(src["md5"].items()):
        args += ["--md5", f"{name}={md5}"]
    return shlex.join(args)
