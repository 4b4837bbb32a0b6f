"""The house rules of issue 12, checked on the source: the import graph reads
jobs/ -> job packages -> plumbing -> (config, errors), with no circle and no job package
importing another; the registry, the package layout and the entry points agree; no library
function grows past 80 lines; each default is written once."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from helpers import ROOT
from mljobs.config import JobConfig
from mljobs.registry import JOBS, job_module, package_of

LIB = ROOT / "lib" / "mljobs"
JOB_PACKAGES = {package_of(j) for j in JOBS}
MAX_LINES = 80


def _module_name(path: Path) -> str:
    rel = path.relative_to(LIB.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every mljobs module a file imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("mljobs")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mljobs"):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names
                    if (LIB.parent / node.module.replace(".", "/") / a.name).with_suffix(".py").exists()
                    or (LIB.parent / node.module.replace(".", "/") / a.name).is_dir()}
    return out


def _unit(module: str) -> str:
    """A job package counts as one unit; every other module is a plumbing unit of its own."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in JOB_PACKAGES:
        return f"job:{parts[1]}"
    return module


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in LIB.rglob("*.py"):
        src = _unit(_module_name(path))
        deps = {_unit(m) for m in _imports(path)} - {src, "mljobs"}
        graph.setdefault(src, set()).update(deps)
    return graph


def test_no_job_package_imports_another_and_plumbing_imports_no_job():
    graph = _graph()
    bad = sorted((src, dst) for src, deps in graph.items() for dst in deps
                 if dst.startswith("job:") and src != dst)
    assert not bad, f"imports of a job package from outside it: {bad}"


def test_the_import_graph_has_no_circle():
    graph = _graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_errors_and_config_import_no_other_mljobs_module_but_errors():
    assert _imports(LIB / "errors.py") == set()
    assert _imports(LIB / "config.py") <= {"mljobs.errors"}


def test_no_library_function_is_longer_than_80_lines():
    long = []
    for path in sorted(LIB.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "split into named steps:\n" + "\n".join(long)


@pytest.mark.parametrize("name", JOBS)
def test_each_job_follows_the_contract(name):
    pkg = package_of(name)
    assert (LIB / pkg / "config.py").is_file() and (LIB / pkg / "job.py").is_file()
    assert (ROOT / "jobs" / f"{pkg}.py").is_file()
    mod = job_module(name)
    assert mod.NAME == name and callable(mod.run)
    assert isinstance(mod.CONFIG, type) and issubclass(mod.CONFIG, JobConfig) and dataclasses.is_dataclass(mod.CONFIG)
    assert mod.CONFIG.__module__ == f"mljobs.{pkg}.config"
    assert isinstance(mod.GPU_FALLBACKS, list)
    # The entry point is thin: it parses and hands over to run_job, nothing else.
    entry = ast.parse((ROOT / "jobs" / f"{pkg}.py").read_text())
    funcs = {n.name for n in entry.body if isinstance(n, ast.FunctionDef)}
    assert funcs <= {"parse_args", "main"}, funcs


@pytest.mark.parametrize("name", JOBS)
def test_job_yaml_holds_no_default_twice(name):
    """conf/<job>.yaml may set only known keys, and only to values other than the field's
    default (the default lives on the field alone)."""
    path = ROOT / "conf" / f"{name}.yaml"
    if not path.exists():
        return
    values = yaml.safe_load(path.read_text()) or {}
    cls = job_module(name).CONFIG
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    assert set(values) <= set(fields), sorted(set(values) - set(fields))
    same = [k for k, v in values.items() if fields[k].default is not dataclasses.MISSING and fields[k].default == v]
    assert not same, f"{path.name} repeats the field defaults of {same}"


def test_registry_lists_exactly_the_job_packages():
    packages = {p.parent.name for p in LIB.glob("*/job.py")}
    assert packages == JOB_PACKAGES
    entries = {p.stem for p in (ROOT / "jobs").glob("*.py") if not p.name.startswith("_")}
    assert entries == JOB_PACKAGES
