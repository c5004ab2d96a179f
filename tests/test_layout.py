"""The package's shape keeps the data flow: targets source -> scheduler -> probe -> results
store -> outputs. These tests read the source (no imports run) and fail on an import or a piece
of wiring that would break it, naming the file and line."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "daemon"

# Libraries that do I/O: the value types must not pull any of them in.
IO_LIBRARIES = (
    "socket",
    "ssl",
    "http",
    "urllib3",
    "requests",
    "gevent",
    "boto3",
    "botocore",
    "prometheus_client",
)
# Classes whose construction is wiring: only the composition root builds them.
WIRED = {
    "Scheduler",
    "Prober",
    "Reloader",
    "Publisher",
    "Exposition",
    "ResultsStore",
    "Telemetry",
    "CloudWatchSink",
    "LocalResultsFile",
    "S3ResultsFile",
    "LocalFileSource",
    "S3TargetSource",
    "SystemClock",
    "SharedResults",
    "StaticMembership",
    "EcsMembership",
    "OnDemandProber",
    "HttpServer",
}


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        yield name.removesuffix(".__init__"), ast.parse(path.read_text(), str(path))


def imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module


def under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def offences(check) -> list[str]:
    found = []
    for name, tree in modules():
        for line, imported in imports(tree):
            if check(name, imported):
                found.append(f"{name}:{line} imports {imported}")
    return found


def test_the_model_imports_no_io_library():
    assert not offences(
        lambda name, imported: (
            name == "daemon.model" and any(under(imported, lib) for lib in IO_LIBRARIES)
        )
    )


@pytest.mark.parametrize("stage", ["daemon.sources", "daemon.probe", "daemon.scheduler"])
def test_upstream_stages_never_import_the_outputs(stage):
    assert not offences(
        lambda name, imported: under(name, stage) and under(imported, "daemon.outputs")
    )


@pytest.mark.parametrize(
    "upstream", ["daemon.sources", "daemon.probe", "daemon.scheduler", "daemon.runtime"]
)
def test_outputs_read_nothing_upstream_of_the_store(upstream):
    assert not offences(
        lambda name, imported: under(name, "daemon.outputs") and under(imported, upstream)
    )


def test_sources_and_probe_do_not_know_each_other():
    assert not offences(
        lambda name, imported: (
            (under(name, "daemon.sources") and under(imported, "daemon.probe"))
            or (under(name, "daemon.probe") and under(imported, "daemon.sources"))
        )
    )


def test_only_the_composition_root_wires_objects():
    found = []
    for name, tree in modules():
        if name == "daemon.runtime":
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in WIRED
            ):
                found.append(f"{name}:{node.lineno} builds {node.func.id}")
    assert not found


def test_no_module_holds_mutable_state_at_import():
    found = []
    mutable = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
    for name, tree in modules():
        for node in tree.body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, mutable):
                found.append(f"{name}:{node.lineno} a mutable value at module level")
            if isinstance(node, ast.FunctionDef):
                for decorator in node.decorator_list:
                    text = ast.unparse(decorator)
                    if "cache" in text:
                        found.append(f"{name}:{node.lineno} a cache at module level ({text})")
    assert not found
