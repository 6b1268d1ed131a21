"""The package's architecture: folders by role, imports only downwards, no cycle, no private
name across modules, rules that name their code, modules that hold one thing."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from chaosgd.planning.code_inputs import code_closure, module_file, package_imports, rule_inputs

from support.workflow import REPO

PACKAGE = REPO / "workflow" / "chaosgd"
RULES = REPO / "workflow" / "rules"
# a stage is what a rule file is named after; the stages are the package's top-level modules
STAGES = sorted(p.stem for p in RULES.glob("*.smk") if p.stem != "common")
# what each role may import besides itself: planning is the bottom, tools the top; a stage may
# import every role but no other stage
ALLOWED = {
    "planning": set(),
    "engine": {"planning"},
    "runs": {"planning", "engine"},
    "analysis": {"planning", "engine", "runs"},
    "tools": {"planning", "engine", "runs", "analysis"},
    "stage": {"planning", "engine", "runs", "analysis"},
}
ROLES = [r for r in ALLOWED if r != "stage"]
TOOLS = ("tools.archive", "tools.bench", "tools.stale", "tools.stress")
# modules over MAX_LINES that are one thing each, and why they stay whole
MAX_LINES = 600
ONE_THING: dict[str, str] = {}


def modules(package: Path = PACKAGE) -> list[str]:
    """Every module and subpackage, dotted and relative to the package (``runs.trainer``)."""
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            names.append(".".join(parts))
    return names


def role(module: str) -> str:
    top = module.split(".")[0]
    return top if top in ALLOWED and top != "stage" else "stage"


def import_cycles(package: Path = PACKAGE) -> list[list[str]]:
    """Each cycle of the import graph (read from the sources), as the modules along it."""
    graph = {m: package_imports(m, package) for m in modules(package)}
    cycles, state = [], {}

    def visit(m, path):
        state[m] = "open"
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open":
                cycles.append(path[path.index(n) :] + [n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [m])
    return cycles


def private_imports(package: Path = PACKAGE) -> list[str]:
    """``from chaosgd.x import _y`` and ``x._y`` on a package module ``x``, anywhere."""
    name, found = package.name, []
    for module in modules(package):
        path = module_file(module, package)
        tree = ast.parse(path.read_text())
        bound = set()  # local names of package modules
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level == 0 and base.split(".")[0] != name:
                    continue
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{module}: from {base or '.'} import {alias.name}")
                    bound.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == name:
                        bound.add(alias.asname or alias.name.split(".")[0])
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                found.append(f"{module}: {node.value.id}.{node.attr}")
    return found


# -- the tree ------------------------------------------------------------------------------------


def test_the_top_level_holds_the_stages_and_the_roles():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top == set(STAGES)
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders == set(ROLES)


def test_every_stage_has_a_module_and_only_its_rules_run_it():
    for stage in STAGES:
        text = (RULES / f"{stage}.smk").read_text()
        assert (PACKAGE / f"{stage}.py").is_file(), stage
        rules = re.findall(r"^rule (\w+):", text, re.M)
        assert rules and all(r.startswith(f"{stage}_") for r in rules), (stage, rules)
        commands = re.findall(r"python -m chaosgd\.(\w+)", text)
        assert set(commands) == {stage}, (stage, commands)
        # every rule that runs the stage names the stage's import closure as its code
        closures = re.findall(r'code=rule_inputs\("(\w+)"\)', text)
        assert closures == [stage] * len(commands), (stage, closures)


def test_each_role_imports_only_the_roles_below_it():
    offenders = {}
    for module in modules():
        bad = {
            m
            for m in package_imports(module)
            if (role(m) == "stage" and m != module)
            or (role(m) != role(module) and role(m) not in ALLOWED[role(module)])
        }
        if bad:
            offenders[module] = sorted(bad)
    assert not offenders


def test_planning_imports_no_torch():
    """The Snakefile imports planning only: building the DAG must not load torch."""
    names = [m for m in modules() if role(m) == "planning"]
    script = (
        "import sys\n"
        + "".join(f"import chaosgd.{m}\n" for m in names)
        + "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy')))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_no_import_cycle():
    assert import_cycles() == []


def test_no_private_name_is_imported_across_modules():
    assert private_imports() == []


def test_no_module_is_over_the_size_unless_it_is_one_thing():
    sizes = {m: len(module_file(m).read_text().splitlines()) for m in modules()}
    big = {m: n for m, n in sizes.items() if n > MAX_LINES and m not in ONE_THING}
    assert not big
    assert set(ONE_THING) <= set(sizes)


# -- the checks themselves can fail --------------------------------------------------------------


def _package(tmp_path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "chaosgd"
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in [pkg, *[p for p in pkg.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()
    return pkg


def test_the_import_check_sees_every_spelling(tmp_path):
    pkg = _package(
        tmp_path,
        {
            **{f"{n}.py": "" for n in "abcdef"},
            "sub/g.py": "",
            "sub/h.py": "from ..a import x\nfrom . import g\n",
            "stage.py": "import chaosgd.a\nfrom chaosgd import b\nfrom chaosgd.c import x\n"
            "from . import d\nfrom .e import y\nimport numpy\nfrom chaosgd.sub.h import z\n\n"
            "def f():\n    from chaosgd.f import z\n",
        },
    )
    assert package_imports("stage", pkg) == {"a", "b", "c", "d", "e", "f", "sub", "sub.h"}
    assert package_imports("sub.h", pkg) == {"a", "sub", "sub.g"}
    closure = {str(Path(p).relative_to(pkg)) for p in code_closure("stage", pkg)}
    assert closure == {
        "__init__.py",
        "stage.py",
        *(f"{n}.py" for n in "abcdef"),
        "sub/__init__.py",
        "sub/g.py",
        "sub/h.py",
    }


def test_a_cycle_a_private_import_and_an_upward_import_are_caught(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "engine/a.py": "from chaosgd.engine.b import y\n",
            "engine/b.py": "from chaosgd.engine import a\n\ndef f():\n    return a._hidden\n",
            "engine/c.py": "from chaosgd.runs.d import _secret\n",
            "runs/d.py": "",
        },
    )
    assert import_cycles(pkg) == [["engine.a", "engine.b", "engine.a"]]
    assert private_imports(pkg) == [
        "engine.b: a._hidden",
        "engine.c: from chaosgd.runs.d import _secret",
    ]
    assert "runs.d" in package_imports("engine.c", pkg)
    assert "runs" not in ALLOWED[role("engine.c")]


@pytest.fixture(scope="module")
def imported():
    """What importing each stage and tool loads, each in its own interpreter (all at once:
    every one imports torch, which takes seconds)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    procs = {
        module: subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import sys, chaosgd.{module}\n"
                "print(' '.join(m for m in sys.modules if m.split('.')[0] == 'chaosgd'))",
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for module in STAGES + list(TOOLS)
    }
    out = {}
    for module, proc in procs.items():
        stdout, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, module
        out[module] = stdout.split()
    return out


@pytest.mark.parametrize("module", STAGES + list(TOOLS))
def test_code_closure_is_what_python_imports(module, imported):
    """The rules' code inputs (read from the sources) equal what importing the module loads."""
    files = {
        str(module_file(m.split(".", 1)[1]) if "." in m else PACKAGE / "__init__.py")
        for m in imported[module]
    }
    assert set(code_closure(module)) == files


def test_conda_environment_pins_the_package_dependencies():
    """envs/chaosgd.yaml installs what pyproject.toml pins, at the same versions."""
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "envs/chaosgd.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pins = {p for p in pip if "==" in p}
    assert pins == set(deps)
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python == f"python={requires.removeprefix('>=')}"


def test_rules_name_their_code_relative_to_the_working_directory(tmp_path, monkeypatch):
    """Relative code inputs stay the same paths when the checkout moves (Snakemake reruns a job
    whose recorded input set changed); they name the same files as the closure."""
    monkeypatch.chdir(REPO)
    names = rule_inputs("train")
    assert all(not Path(n).is_absolute() for n in names)
    assert names[0].startswith("workflow/chaosgd/") or names[0].startswith("workflow" + os.sep)
    assert {str((REPO / n).resolve()) for n in names} == {
        str(Path(p).resolve()) for p in code_closure("train")
    }
    # from another working directory (snakemake --directory), relative to that one
    monkeypatch.chdir(tmp_path)
    assert {str((tmp_path / n).resolve()) for n in rule_inputs("train")} == {
        str(Path(p).resolve()) for p in code_closure("train")
    }
