"""The distribution: ``python -m build`` makes an sdist and a wheel; the wheel, installed alone
in a fresh virtual environment, is the library without the server's libraries, with its
metadata (license, classifiers, version from one place) — ADR 0016."""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import tarfile
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import threadbox

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

SMOKE = """
import importlib.util, json, threadbox
from threadbox import Message
with threadbox.open("memory://") as mailbox:
    mailbox.deliver("t1", [Message.user("hello", id="m1")])
    result = mailbox.freeze("t1", "new_run", "r1")
print(json.dumps({
    "version": threadbox.__version__,
    "committed": [c.message.id for c in result.committed],
    "server_libraries": [m for m in ("fastapi", "uvicorn", "typer", "rich", "sse_starlette")
                         if importlib.util.find_spec(m) is not None],
}))
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    yield out


def only(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, found
    return found[0]


def test_the_wheel_carries_the_metadata_and_the_license(dist: Path) -> None:
    wheel = only(dist, "threadbox-*.whl")
    assert wheel.name.startswith(f"threadbox-{threadbox.__version__}-py3-none-any")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = f"threadbox-{threadbox.__version__}.dist-info"
        metadata = email.message_from_bytes(archive.read(f"{info}/METADATA"))
    assert metadata["Version"] == threadbox.__version__
    assert metadata["License-Expression"] == "MIT"
    assert f"{info}/licenses/LICENSE" in names
    classifiers = metadata.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert any(c.startswith("Programming Language :: Python :: 3.11") for c in classifiers)
    assert metadata.get_all("Project-URL")
    requires = metadata.get_all("Requires-Dist") or []
    core = [r for r in requires if "extra ==" not in r]
    server = [r for r in requires if re.search(r"extra == ['\"]server['\"]", r)]
    assert {re.split(r"[\[<>=;]", r)[0].strip() for r in core} == {
        "eventsourcing",
        "pydantic",
        "psycopg",
        "orjson",
        "prometheus-client",
    }
    assert {"fastapi", "uvicorn", "typer", "rich"} <= {
        re.split(r"[\[<>=;]", r)[0].strip() for r in server
    }
    assert "threadbox/py.typed" in names
    assert not [n for n in names if n.startswith("tests/")]


def test_the_sdist_holds_what_a_rebuild_needs(dist: Path) -> None:
    sdist = only(dist, "threadbox-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    assert {"pyproject.toml", "LICENSE", "README.md", "facade/__init__.py"} <= names


def test_the_wheel_alone_is_the_library_in_a_fresh_environment(dist: Path, tmp_path: Path) -> None:
    wheel = only(dist, "threadbox-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
        env=clean,
    )
    done = subprocess.run(
        [str(python), "-c", SMOKE],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean,
        cwd=tmp_path,
    )
    assert done.stdout.strip() == (
        f'{{"version": "{threadbox.__version__}", "committed": ["m1"], "server_libraries": []}}'
    )
    # Without the server extra the command line says what to install, in one line.
    cli = subprocess.run(
        [str(env_dir / "bin" / "threadbox"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
        cwd=tmp_path,
    )
    assert cli.returncode == 1
    assert cli.stderr.startswith("error [missing_extra]: the threadbox command line needs")
    assert "pip install 'threadbox[server]'" in cli.stderr and "Traceback" not in cli.stderr
