"""The wheel installs one top-level package, ``tv100``, with every sub-package and data file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOP_FOLDERS = ("flows", "tasks", "storage", "sandbox")


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources.
    src = tmp_path_factory.mktemp("src")
    for name in (*TOP_FOLDERS, "pyproject.toml", "README.md"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = out.glob("tv100-*.whl")
    with zipfile.ZipFile(wheel) as z:
        return z.namelist()


def test_wheel_has_only_the_tv100_namespace(wheel_names: list[str]) -> None:
    tops = {n.split("/", 1)[0] for n in wheel_names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"tv100"}


def test_every_package_folder_is_in_the_wheel(wheel_names: list[str]) -> None:
    expected = {
        "tv100/" + p.parent.relative_to(REPO).as_posix() + "/__init__.py"
        for top in TOP_FOLDERS
        for p in (REPO / top).rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert expected - set(wheel_names) == set(), "add the folder to pyproject's packages"


def test_package_data_is_in_the_wheel(wheel_names: list[str]) -> None:
    data = [
        p.relative_to(REPO).as_posix()
        for top in TOP_FOLDERS
        for p in (REPO / top).rglob("*")
        if p.is_file() and p.suffix in {".sql", ".j2"}
    ]
    assert {f"tv100/{d}" for d in data} - set(wheel_names) == set()


def _env_without_the_checkout_on_pythonpath() -> dict[str, str]:
    """This environment, less PYTHONPATH entries naming the checkout's root.

    The root on PYTHONPATH (as a run that imports ``tests.*`` from a worktree sets it) makes
    ``flows`` & co importable by the user's own choice; what is tested is what *installing*
    tv100 exposes.
    """
    env = dict(os.environ)
    kept = [
        entry
        for entry in env.get("PYTHONPATH", "").split(os.pathsep)
        if entry and Path(entry).resolve() != REPO
    ]
    if kept:
        env["PYTHONPATH"] = os.pathsep.join(kept)
    else:
        env.pop("PYTHONPATH", None)
    return env


def test_generic_names_do_not_import_outside_the_checkout(tmp_path: Path) -> None:
    code = (
        "import importlib.util, sys\n"
        "import tv100.flows, tv100.tasks, tv100.storage, tv100.sandbox\n"
        "bare = [n for n in ('flows', 'tasks', 'storage', 'sandbox')"
        " if importlib.util.find_spec(n) is not None]\n"
        "sys.exit(f'importable: {bare}' if bare else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=_env_without_the_checkout_on_pythonpath())
    assert done.returncode == 0, done.stdout + done.stderr


# --- dependencies -------------------------------------------------------------------------------


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _dist_name(requirement: str) -> str:
    from packaging.requirements import Requirement

    return Requirement(requirement).name.lower().replace("_", "-")


def _imported_modules(folders: tuple[str, ...] = TOP_FOLDERS) -> set[str]:
    """Top-level modules the code in `folders` imports (stdlib and our own left out)."""
    import ast

    found: set[str] = set()
    for top in folders:
        for path in (REPO / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    local = {p.stem for p in (REPO / "tests" / "support").rglob("*.py")}  # the kill hook's
    return found - set(sys.stdlib_module_names) - {"tv100", "__future__", "tests", "bench"} - local


@pytest.mark.parametrize(
    ("folders", "extras"),
    [(TOP_FOLDERS, ("cpu", "gpu", "dask")), (("tests", "bench"), ("cpu", "dask", "dev"))],
    ids=["product", "tests-and-bench"],
)
def test_every_imported_package_is_declared(folders, extras) -> None:
    from importlib.metadata import packages_distributions

    project = _pyproject()["project"]
    declared = {_dist_name(r) for r in project["dependencies"]}
    # FAISS comes from the extra the user picks; prefect-dask from the `dask` extra.
    optional = project["optional-dependencies"]
    declared |= {_dist_name(r) for name in extras for r in optional[name]}
    providers = packages_distributions()
    missing = {
        module: providers.get(module)
        for module in _imported_modules(folders)
        if not {_dist_name(d) for d in providers.get(module, [])} & declared
    }
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"


def test_every_cap_says_why() -> None:
    """A requirement with an upper bound or a pin has a comment on its line or just above."""
    lines = (REPO / "pyproject.toml").read_text().splitlines()
    unexplained = []
    for i, line in enumerate(lines):
        text = line.split("#", 1)[0].strip().rstrip(",")
        if not (text.startswith('"') and text.endswith('"')):
            continue
        if not any(op in text for op in ("<", "==", "~=")):
            continue
        above = lines[i - 1].strip() if i else ""
        if "#" not in line and not above.startswith("#"):
            unexplained.append(text)
    assert unexplained == [], f"caps without a comment saying why: {unexplained}"


def test_faiss_builds_are_alternatives() -> None:
    """faiss-cpu and faiss-gpu-* both ship the module `faiss`: never both installed."""
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]

    def faiss_of(reqs: list[str]) -> set[str]:
        return {n for n in map(_dist_name, reqs) if n.startswith("faiss")}

    assert faiss_of(project["dependencies"]) == set()
    assert faiss_of(extras["cpu"]) == {"faiss-cpu"}
    assert len(faiss_of(extras["gpu"])) == 1 and not faiss_of(extras["gpu"]) & {"faiss-cpu"}
    for name, reqs in extras.items():
        assert len(faiss_of(reqs)) <= 1, name


def test_prefect_yaml_names_the_prefect_that_installs() -> None:
    from importlib.metadata import version

    import yaml

    declared = yaml.safe_load((REPO / "prefect.yaml").read_text())["prefect-version"]
    installed = version("prefect")
    assert str(declared).split(".")[:2] == installed.split(".")[:2], (declared, installed)
