"""`pip install .` puts one package into site-packages, `capt`, and the two commands.

Builds the wheel as pip would (an isolated build), then reads it: no bare top-level module such
as `spec` or `worker` can collide with anything else installed, every source file and template
is in it, and the entry points name capt's modules.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.paths import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    # A copy of the checkout, so no earlier build/ or egg-info can leak into the wheel (pip builds
    # a local folder in place) and the test leaves nothing behind.
    source = out / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", ".capt*", "__pycache__", "*_cache", "tests"
        ),
    )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(source), "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = out.glob("capt-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_only_capt_and_its_metadata(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/")[0] for name in wheel.namelist()}
    assert tops == {"capt", next(t for t in tops if t.endswith(".dist-info"))}


def test_every_source_file_and_template_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "capt"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    shipped = {p for p in tracked if Path(p).suffix in (".py", ".j2")}
    assert len(shipped) > 150 and any(p.endswith(".j2") for p in shipped)
    assert shipped <= set(wheel.namelist()), sorted(shipped - set(wheel.namelist()))


def test_the_commands_are_capt_modules(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "capt = capt.cli:main" in text
    assert "capt-worker = capt.worker:main" in text
