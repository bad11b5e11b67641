"""`pip install -e .` gives the package and the `stg` command anywhere, not only in the repository's folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
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
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # It sees this environment's packages (a venv's too, which --system-site-packages would skip) after its own.
    inner = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    outer = sorted({sysconfig.get_paths()[kind] for kind in ("purelib", "platlib")})
    Path(inner, "outer.pth").write_text("\n".join(outer) + "\n")
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


def _declared() -> set[str]:
    """The distributions requirements.txt names, and every one they require in turn (as installed here)."""
    import importlib.metadata as metadata
    import re

    def name(requirement: str) -> str:
        return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")

    todo = [name(line) for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith(("#", "-"))]
    seen: set[str] = set()
    while todo:
        dist = todo.pop()
        if dist in seen:
            continue
        seen.add(dist)
        try:
            requires = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [name(r) for r in requires if "extra ==" not in r]
    return seen


def test_every_module_the_app_imports_is_in_the_requirements():
    """What a Space installs (requirements.txt and what it pulls in) covers every import of the app and the engine,
    so a module present on a development machine by chance cannot break a fresh install."""
    import ast
    import importlib.metadata as metadata

    modules = set()
    for path in [ROOT / "app.py", *(ROOT / "stg").rglob("*.py"), *(ROOT / "webapp").rglob("*.py")]:
        if path.name == "parity_data.py":  # runs the original Open-Sora code in a session, with stand-ins
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    third_party = modules - set(sys.stdlib_module_names) - {"stg", "webapp", "app"}
    owners = metadata.packages_distributions()
    declared = _declared()
    missing = {m: owners.get(m) for m in third_party
               if not {d.lower().replace("_", "-") for d in owners.get(m, [m])} & declared}
    assert not missing, f"imported but not in requirements.txt (nor required by what it names): {missing}"
