"""The code a job runs: the import closure of a stage, named as the rule's ``code`` input.

A rule names every source file its stage imports, directly or not, so that a change in any of
them reruns its jobs and misses the between-workflow output cache, and a change elsewhere does
not. The closure is read from the sources (no import, no torch), so that the Snakefile computes
it quickly; a test checks it against what Python really imports.
"""

from __future__ import annotations

import ast
import functools
import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]


def module_file(module: str, package: str | os.PathLike = PACKAGE) -> Path | None:
    """The source of ``module`` (dotted, relative to the package: ``runs.trainer``, ``tools``),
    or None when no module or subpackage of that name exists."""
    base = Path(package).joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _is_package(module: str, package: Path) -> bool:
    return (package.joinpath(*module.split(".")) / "__init__.py").is_file()


@functools.cache
def package_imports(module: str, package: str | os.PathLike = PACKAGE) -> frozenset[str]:
    """The package's modules that ``module`` imports itself, as dotted names relative to the
    package, read from its source (``import chaosgd.a.b``, ``from chaosgd.a import b``,
    ``from chaosgd.a.b import c``, ``from . import b``, ``from ..a import c``; imports inside
    functions count too). Importing ``a.b`` runs ``a/__init__.py`` first: ``a`` is listed too."""
    package = Path(package)
    name = package.name
    path = module_file(module, package)
    if path is None:
        raise ValueError(f"no module {module!r} in {package}")
    # the package a relative import starts from: the module's own for a package's __init__
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()

    def add(dotted: list[str]) -> None:
        for i in range(1, len(dotted) + 1):
            found.add(".".join(dotted[:i]))

    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == name and len(parts) > 1:
                    add(parts[1:])
        elif isinstance(node, ast.ImportFrom):
            mod = [p for p in (node.module or "").split(".") if p]
            if node.level == 0:
                if not mod or mod[0] != name:
                    continue
                base = mod[1:]
            else:
                up = node.level - 1
                if up > len(here):
                    raise ValueError(f"{module}: relative import beyond the package")
                base = here[: len(here) - up] + mod
            if base:
                add(base)
            for alias in node.names:  # from a import b: b may be a module of a
                dotted = base + [alias.name]
                if module_file(".".join(dotted), package) is not None:
                    add(dotted)
    return frozenset(m for m in found if module_file(m, package) is not None and m != module)


def code_closure(module: str, package: str | os.PathLike = PACKAGE) -> list[str]:
    """Every source file of the package that ``python -m chaosgd.<module>`` runs: the module,
    the package's ``__init__.py``, every subpackage's ``__init__.py`` on the way, and all
    package modules it imports, directly or not."""
    package = Path(package)
    seen: set[str] = set()
    todo = [module]
    parts = module.split(".")
    todo += [".".join(parts[:i]) for i in range(1, len(parts))]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(package_imports(current, package) - seen)
    files = {module_file(m, package) for m in seen} | {package / "__init__.py"}
    return sorted(str(f) for f in files)


def rule_inputs(module: str, start: str | os.PathLike | None = None) -> list[str]:
    """:func:`code_closure` as a rule names it: relative to ``start`` (the working directory,
    where Snakemake resolves relative inputs). Snakemake records each job's set of input paths
    and reruns the job when it changes, so absolute paths would rerun every job of a checkout
    that was moved or copied elsewhere, with the same code in it."""
    start = os.getcwd() if start is None else os.fspath(start)
    return [os.path.relpath(path, start) for path in code_closure(module)]
