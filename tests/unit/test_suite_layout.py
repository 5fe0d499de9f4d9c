"""The suite's own layout: no test module imports another. What tests share lives in tests/builders.py,
tests/fakes.py, tests/golden.py, tests/strategies.py, tests/kueue_config.py, tests/e2e/helpers.py or a conftest.py,
so running, moving or deleting one test module never changes another."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _is_test_module(dotted: str) -> bool:
    return any(part.startswith("test_") for part in dotted.split("."))


def imported_test_modules(path: Path) -> list[str]:
    """The test modules ``path`` imports (absolute or relative, whole or by name)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if _is_test_module(a.name)]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            if _is_test_module(base):
                found.append(base)
            else:  # `from tests.e2e import test_cli`
                found += [f"{base}.{a.name}" for a in node.names if a.name.startswith("test_")]
    return found


def test_no_test_module_imports_another() -> None:
    modules = sorted(TESTS.rglob("test_*.py"))
    assert len(modules) > 50, "the suite was not found"
    offenders = {str(p.relative_to(TESTS)): imported_test_modules(p) for p in modules}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_rule_sees_every_form_of_import(tmp_path: Path) -> None:
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import tests.unit.test_a\n"
        "from tests.unit.test_b import thing\n"
        "from tests.e2e import test_c, helpers\n"
        "from .test_d import other\n"
        "from tests.fakes import cache\n"
        "import pytest\n"
    )
    assert imported_test_modules(sample) == ["tests.unit.test_a", "tests.unit.test_b", "tests.e2e.test_c", ".test_d"]
