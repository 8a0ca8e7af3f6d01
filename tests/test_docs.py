"""The documentation stays true: its Python examples run, and the Semantics page names tests that
exist, a checking test for every rule."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
TEST_REFERENCE = re.compile(r"`(test_\w+\.py)::(\w+)`")


def examples() -> list[tuple[str, str]]:
    """Every ```python block that imports threadbox: a complete program."""
    found = []
    for page in PAGES:
        for number, code in enumerate(PYTHON_BLOCK.findall(page.read_text()), start=1):
            if "import threadbox" in code:
                found.append((f"{page.relative_to(ROOT)}#{number}", code))
    return found


@pytest.mark.parametrize(("where", "code"), examples(), ids=[w for w, _ in examples()])
def test_every_python_example_of_the_docs_runs(
    where: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # examples on sqlite:///./threadbox.db write here
    monkeypatch.delenv("THREADBOX_URL", raising=False)
    exec(compile(code, where, "exec"), {"__name__": "__example__"})


def test_there_are_python_examples_to_run() -> None:
    assert len(examples()) >= 3


def defined_tests() -> set[tuple[str, str]]:
    """(file, name) of every test function and test class of tests/."""
    found = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                found.add((path.name, node.name))
            elif isinstance(node, ast.Assign):  # TestX = Machine.TestCase
                found |= {(path.name, t.id) for t in node.targets if isinstance(t, ast.Name)}
    return found


def test_every_test_the_semantics_page_names_exists() -> None:
    page = (ROOT / "docs" / "semantics.md").read_text()
    named = set(TEST_REFERENCE.findall(page))
    assert len(named) > 50
    assert sorted(named - defined_tests()) == []


def test_every_rule_of_the_semantics_page_names_its_tests() -> None:
    page = (ROOT / "docs" / "semantics.md").read_text()
    rules = re.split(r"\n(?=\*\*S-\d+\*\*)", page.split("## 7. Invariants")[0])[1:]
    numbers = [int(re.match(r"\*\*S-(\d+)\*\*", rule).group(1)) for rule in rules]  # type: ignore[union-attr]
    assert numbers == list(range(1, len(numbers) + 1))
    for rule in rules:
        assert "*Checked by:*" in rule and "test_" in rule, rule[:60]
    invariants = page.split("## 7. Invariants")[1]
    assert [f"**I-{n}**" in invariants for n in range(1, 6)] == [True] * 5
    assert "*Checked by*" in invariants
