"""A missing prerequisite (tests/conftest.py PREREQUISITES) skips outside CI, listed at the end of the run,
and under CI=true stops the run at collection with one line naming it."""

import os
import shutil

import pytest

from .conftest import run_python


@pytest.fixture
def path_without_chromium(tmp_path):
    """PATH with every program of the current PATH except Chromium (links to the rest)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        if os.path.isdir(folder):
            for entry in os.scandir(folder):
                target = bin_dir / entry.name
                if not entry.name.startswith("chromium") and not target.exists():
                    target.symlink_to(entry.path)
    assert shutil.which("chromium", path=str(bin_dir)) is None and shutil.which("python3", path=str(bin_dir))
    return str(bin_dir)


@pytest.mark.parametrize("ci", ["true", ""])
def test_missing_chromium_fails_under_ci_and_skips_outside(ci, path_without_chromium):
    env = {"PATH": path_without_chromium, "CI": ci}
    proc = run_python(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_demos.py", "-m", "requires"], env=env
    )
    output = (proc.stdout + proc.stderr).strip().splitlines()
    if ci:
        assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout[-2000:]
        named = [line for line in output if "chromium" in line]
        assert len(named) == 1 and "CI=true and a prerequisite is missing: chromium" in named[0], output
    else:
        assert proc.returncode == 0, proc.stdout[-2000:]
        skipped = [line for line in output if line.startswith("SKIPPED")]
        assert skipped and all("missing prerequisite chromium" in line for line in skipped), output
