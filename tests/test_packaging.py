"""The package installs as a wheel: every package directory is a regular package and is listed in setup.cfg,
every data file the code reads is found through ``pipelines.resources`` and declared as package data, and a
wheel built from the repository carries them. (``.ci/wheel-check`` installs that wheel and runs the demo.)"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pipelines import resources

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = ROOT / "pipelines"


def _options() -> configparser.SectionProxy:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    return config["options"]


def _listed_packages() -> set[str]:
    return set(_options()["packages"].split())


def _package_dirs() -> set[Path]:
    """Directories under pipelines/ that hold Python code (the places a package must be)."""
    return {p.parent for p in PIPELINES.rglob("*.py") if "__pycache__" not in p.parts}


def test_every_code_directory_is_a_regular_package():
    """Without ``__init__.py`` a directory is a namespace package: importable from a checkout, but left out
    of a wheel built from ``packages = find:``."""
    missing = sorted(str(d.relative_to(ROOT)) for d in _package_dirs() if not (d / "__init__.py").is_file())
    assert missing == []


def test_setup_cfg_lists_every_package():
    code = {".".join(d.relative_to(ROOT).parts) for d in _package_dirs()}
    listed = {name for name in _listed_packages() if not name.startswith("pipelines._data")}
    assert code == listed


def test_schemas_and_expectations_are_the_repository_folders():
    """In a checkout the data is read where people edit it, not from a copy."""
    assert resources.SCHEMAS == ROOT / "schemas"
    assert resources.EXPECTATIONS == ROOT / "expectations"
    assert not (PIPELINES / "_data").exists()


def test_every_data_file_resolves():
    files = resources.data_files()
    assert all(path.is_file() for path in files), [str(p) for p in files if not p.is_file()]
    contracts = {p.stem for p in resources.FEED_CONTRACTS.glob("*.json")}
    assert len(contracts) == 7 and {p.stem for p in resources.FEED_MAPPINGS.glob("*.toml")} == contracts
    assert {p.stem for p in resources.EXPECTATIONS.glob("*.json")} == {
        p.stem for p in resources.FEED_CONTRACTS.glob("*.json")
    }


def test_every_data_file_in_the_package_is_read_through_resources():
    """A data file added beside the code must be declared (resources.data_files, setup.cfg package data),
    or the wheel silently lacks it."""
    beside_code = {
        p
        for p in PIPELINES.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }
    assert beside_code - set(resources.data_files()) == set()


def _wheel_path(path: Path) -> str:
    """Where a data file of the checkout sits in the wheel (setup.cfg maps schemas/, expectations/)."""
    relative = path.relative_to(ROOT)
    if relative.parts[0] in ("schemas", "expectations"):
        return "pipelines/_data/" + relative.as_posix()
    return relative.as_posix()


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """File names in a wheel built from a clean copy of the sources (a build in the checkout could pick up
    stale files from ``build/``)."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is needed to build the wheel")
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("pipelines", "schemas", "expectations"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [uv, "build", "--quiet", "--wheel", "--python", sys.executable, "--out-dir", str(dist), str(src)],
        check=True,
    )
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_carries_every_package_and_data_file(wheel_names: set[str]):
    modules = {
        p.relative_to(ROOT).as_posix() for p in PIPELINES.rglob("*.py") if "__pycache__" not in p.parts
    }
    data = {_wheel_path(p) for p in resources.data_files()}
    assert (modules | data) - wheel_names == set()
