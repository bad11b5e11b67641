"""`pip install -e .` gives the package and the `stg` command anywhere, not only in the repository's folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_an_editable_install_gives_the_package_and_the_stg_command_from_any_folder(tmp_path):
    # A copy of what the package needs, so that building leaves nothing in this checkout.
    source = tmp_path / "checkout"
    source.mkdir()
    for name in ("pyproject.toml", "requirements.txt", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "stg", source / "stg", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "presets", source / "presets")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                              "--no-build-isolation", "--no-index", "-e", str(source)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = subprocess.run([str(venv / "bin" / "stg"), "compare", "--model", "shapes", "--help"], cwd=elsewhere,
                             capture_output=True, text=True, timeout=120)
    assert command.returncode == 0 and "(default: 20 for shapes)" in " ".join(command.stdout.split()), command.stderr
    found = subprocess.run([str(python), "-c", "import stg.presets as p; print(p.__file__); print(p.get('shapes').source)"],
                           cwd=elsewhere, capture_output=True, text=True, timeout=120)
    module, weights = found.stdout.split()
    assert Path(module) == source / "stg" / "presets.py" and Path(weights) == source / "assets" / "shapes", found
    missing = subprocess.run([str(python), "-m", "stg"], cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "usage: python -m stg" in missing.stderr  # not "No module named stg"
