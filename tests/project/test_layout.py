"""The layout is the architecture: checks that keep the house rules of ARCHITECTURE.md true."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("flows", "tasks", "storage")
#: Modules of tasks/ longer than ~600 lines, each genuinely one thing (see ARCHITECTURE.md).
LONG_BUT_ONE_THING: dict[str, str] = {}
MAX_LINES = 620


def _py(*folders: str) -> list[Path]:
    paths = (p for f in folders for p in (REPO / f).rglob("*.py"))
    return sorted(p for p in paths if "__pycache__" not in p.parts)


def _decorators(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for d in node.decorator_list:
                target = d.func if isinstance(d, ast.Call) else d
                names.append(ast.unparse(target))
    return names


@pytest.mark.parametrize("path", _py("flows"), ids=lambda p: str(p.relative_to(REPO)))
def test_flows_define_no_tasks(path: Path) -> None:
    assert "task" not in _decorators(path)


@pytest.mark.parametrize("path", _py("flows"), ids=lambda p: str(p.relative_to(REPO)))
def test_flows_import_no_other_flow(path: Path) -> None:
    if "cli" in path.parts or path.name in ("build.py", "__init__.py"):
        return  # the CLI runs flows and build chains them: that is their job
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tv100.flows."):
            assert node.module == "tv100.flows.runners", f"{path.name} imports {node.module}"


@pytest.mark.parametrize("path", _py(*PRODUCT), ids=lambda p: str(p.relative_to(REPO)))
def test_product_does_not_know_the_sandbox(path: Path) -> None:
    assert not re.search(r"^\s*(from|import) tv100\.sandbox", path.read_text(), re.M)


@pytest.mark.parametrize("path", _py("tasks"), ids=lambda p: str(p.relative_to(REPO)))
def test_tasks_receive_a_data_root(path: Path) -> None:
    assert "resolve_root(" not in path.read_text(), "flows resolve the data root, once"


@pytest.mark.parametrize("path", _py("flows"), ids=lambda p: str(p.relative_to(REPO)))
def test_no_hard_coded_data_root(path: Path) -> None:
    assert '"./data"' not in path.read_text(), "default to tv100.storage.root.default_data()"


@pytest.mark.parametrize("path", _py("tasks"), ids=lambda p: str(p.relative_to(REPO)))
def test_task_modules_are_small(path: Path) -> None:
    rel = str(path.relative_to(REPO))
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES or rel in LONG_BUT_ONE_THING, f"{rel}: {lines} lines"


@pytest.mark.parametrize("path", _py(*PRODUCT, "sandbox"), ids=lambda p: str(p.relative_to(REPO)))
def test_writes_go_through_storage(path: Path) -> None:
    if path.parts[-2] == "storage":
        return
    text = path.read_text()
    assert "os.replace(" not in text and ".tmp" not in text, "use tv100.storage.atomic"


def test_bench_does_not_edit_sys_path() -> None:
    for path in _py("bench"):
        assert "sys.path" not in path.read_text(), path.name
