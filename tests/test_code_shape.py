"""The shape of the code the issues ask for: small modules, and the linter clean (ARCHITECTURE.md)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbdiffuse

ROOT = Path(nbdiffuse.__file__).resolve().parent
REPO = ROOT.parent
MAX_MODULE_LINES = 450


def long_modules(root: Path, limit: int = MAX_MODULE_LINES) -> list[tuple[str, int]]:
    found = []
    for path in sorted(root.rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            found.append((str(path.relative_to(root.parent)), lines))
    return found


def test_no_python_module_is_over_450_lines():
    assert long_modules(ROOT) == []


def test_the_line_count_check_can_fail(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "big.py").write_text("x = 1\n" * 451)
    (tmp_path / "pkg" / "fine.py").write_text("x = 1\n" * 450)
    assert long_modules(tmp_path / "pkg") == [("pkg/big.py", 451)]


def test_ruff_finds_nothing():
    checked = [str(REPO / name) for name in ("nbdiffuse", "tests", "benchmarks", "examples") if (REPO / name).exists()]
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *checked], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
