"""A non-editable install carries everything the package reads at run time (task definitions, paper results,
curation configs), so `python -m llava_medgpt.eval --help` from the installed copy lists every task."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "llava_medgpt"


def _package_data_files() -> set[str]:
    """Every file in the package folder that is not Python source or a cache: what the wheel must also hold."""
    found = set()
    for path in PACKAGE.rglob("*"):
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts:
            found.add(path.relative_to(REPO).as_posix())
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy: setuptools writes build/ and *.egg-info beside setup.py.
    source = tmp_path_factory.mktemp("source")
    shutil.copy(REPO / "setup.py", source)
    shutil.copy(REPO / "README.md", source)
    shutil.copytree(PACKAGE, source / "llava_medgpt", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, capture_output=True)
    (built,) = out.glob("llava_medgpt-*.whl")
    return built


def test_wheel_holds_every_package_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = _package_data_files()
    assert "llava_medgpt/eval/tasks/configs/medqa.yaml" in expected  # the walk sees the task definitions
    assert expected - names == set()


def test_installed_copy_lists_every_task(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    # Outside the repository and with only the installed copy on the path (the editable install points at a
    # checkout, which is exactly what this must not use).
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-c", "import llava_medgpt.eval.tasks as t; print(t.__file__); "
                          "print(*t.task_names())"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True)
    where, names = run.stdout.splitlines()
    assert Path(where).is_relative_to(target)
    shipped = sorted(p.stem for p in (PACKAGE / "eval" / "tasks" / "configs").glob("*.yaml"))
    assert len(shipped) == 18 and names.split() == shipped
    help_text = subprocess.run([sys.executable, "-m", "llava_medgpt.eval", "--help"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, check=True).stdout
    listed = " ".join(help_text.split())  # argparse wraps the list
    assert all(name in listed for name in shipped)
    tables = subprocess.run([sys.executable, "-c", "from llava_medgpt.eval.tables import load_paper_results as l; "
                             "print(sorted(l()['tables']))"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            check=True).stdout
    assert "'4'" in tables and "'figure2'" in tables
