"""The documentation stays true: its Python examples run, and the Semantics page names tests that
exist, a checking test for every rule, and for every invariant a test run on every backend."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import threadbox

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
TEST_REFERENCE = re.compile(r"`(test_\w+\.py)::(\w+)`")
BACKENDS = {"memory", "sqlite", "postgres"}


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


def test_the_python_api_page_renders_every_public_name() -> None:
    page = (ROOT / "docs" / "python-api.md").read_text()
    rendered = set(re.findall(r"^::: threadbox\.(\w+)$", page, re.M))
    assert sorted({*threadbox.__all__, "errors", "audit"} - rendered) == []


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
    invariants = re.split(r"\n(?=\*\*I-\d\*\*)", page.split("## 7. Invariants")[1])[1:]
    assert [i[:7] for i in invariants] == [f"**I-{n}**" for n in range(1, 6)]
    for invariant in invariants:
        assert "*Checked by:*" in invariant and "test_" in invariant, invariant[:60]


def parameters_collected(files: set[str]) -> dict[tuple[str, str], set[str]]:
    """(file, test) -> every word of the parameter ids pytest collects for it, e.g. ``postgres``
    from ``test_x[postgres-case]``: what actually runs, read from pytest itself."""
    quietly = ["--collect-only", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *quietly, *(f"tests/{f}" for f in sorted(files))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[tuple[str, str], set[str]] = {}
    for line in done.stdout.splitlines():
        item = re.fullmatch(r"tests/(test_\w+\.py)::(\w+)(?:::\w+)?(?:\[(.*)\])?", line.strip())
        if item is not None:
            words = set(re.split(r"[-\s]", item.group(3) or ""))
            found.setdefault((item.group(1), item.group(2)), set()).update(words)
    return found


def test_every_invariant_names_a_test_that_runs_on_every_backend() -> None:
    page = (ROOT / "docs" / "semantics.md").read_text()
    invariants = page.split("## 7. Invariants")[1].split("\n### ")[0]
    named = {
        n: set(TEST_REFERENCE.findall(text))
        for n, text in re.findall(r"\*\*I-(\d)\*\*(.*?)(?=\*\*I-\d\*\*|\Z)", invariants, re.S)
    }
    assert sorted(named) == ["1", "2", "3", "4", "5"]
    collected = parameters_collected({f for tests in named.values() for f, _ in tests})
    everywhere = {test for test, words in collected.items() if words >= BACKENDS}
    assert {n: sorted(tests & everywhere) != [] for n, tests in named.items()} == dict.fromkeys(
        named, True
    )


def test_every_citation_of_the_semantics_page_names_one_of_its_sections() -> None:
    page = (ROOT / "docs" / "semantics.md").read_text()
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", page, re.M))
    assert {"1", "3.1", "4.1", "7"} <= sections
    folders = ["ADRs", "docs", "tests", "application", "benchmarks", "domain", "facade"]
    folders += ["infrastructure", "projections"]
    sources = [path for folder in folders for path in (ROOT / folder).rglob("*")]
    cited = {
        (str(path.relative_to(ROOT)), number)
        for path in [ROOT / "README.md", *sources]
        if path.suffix in (".py", ".md")
        for number in re.findall(r"docs/semantics\.md §([\d.]*\d)", path.read_text())
    }
    assert len(cited) > 20
    assert sorted((path, n) for path, n in cited if n not in sections) == []
