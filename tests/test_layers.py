"""The layers as a user of the package meets them: importing the domain loads the domain
alone, the facade's names load on first use, every public name of the facade, the domain and
the application is documented, and the library changes nothing process-wide (the garbage
collector, Starlette's path convertors)."""

from __future__ import annotations

import gc
import importlib
import inspect
import pkgutil
import subprocess
import sys
from types import ModuleType

import pytest
import starlette.convertors
import threadbox
from threadbox import Mailbox, Message, errors

# What importing the domain must not load: another layer, or a library of storage, HTTP or CLI.
OTHER_LAYERS = ("threadbox.application", "threadbox.projections", "threadbox.infrastructure")
IO_LIBRARIES = {"eventsourcing", "psycopg", "psycopg_pool", "sqlite3", "fastapi", "starlette"}
IO_LIBRARIES |= {"uvicorn", "typer", "rich"}


def outside_the_domain(modules: list[str]) -> list[str]:
    return [m for m in modules if m.startswith(OTHER_LAYERS) or m.split(".")[0] in IO_LIBRARIES]


def loaded_by(statement: str) -> list[str]:
    """The modules a fresh interpreter has loaded after ``statement``."""
    script = f"{statement}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd="/"
    )
    return done.stdout.split()


@pytest.mark.parametrize(
    "statement",
    [
        "import threadbox.domain.thread",
        "import threadbox.domain.decide",
        "from threadbox.domain import results",
        "import threadbox.errors",
        "from threadbox import Message, DeliveryMode, select_for_freeze",
    ],
)
def test_importing_the_domain_loads_no_other_layer_and_no_io_library(statement: str) -> None:
    loaded = loaded_by(statement)
    assert "threadbox.domain" in loaded
    assert outside_the_domain(loaded) == []


def test_the_projections_load_no_storage_http_or_cli_library() -> None:
    loaded = loaded_by("import threadbox.projections.tables, threadbox.projections.reading")
    assert "threadbox.projections.tables" in loaded
    outside = [m for m in outside_the_domain(loaded) if not m.startswith("threadbox.projections")]
    assert outside == []


def test_the_facade_exports_what_it_lists_and_loads_each_name_on_first_use() -> None:
    assert set(threadbox.__all__) == {*threadbox.EXPORTS, "open"}
    assert [m for m in loaded_by("import threadbox") if m.startswith("threadbox.")] == []
    for name in threadbox.__all__:
        value = getattr(threadbox, name)
        assert getattr(value, "__name__", name) == name
    assert set(threadbox.__all__) <= set(dir(threadbox))
    with pytest.raises(AttributeError, match="no attribute 'Mailboxes'"):
        threadbox.Mailboxes  # type: ignore[attr-defined]  # noqa: B018


def modules_of(package: str) -> list[ModuleType]:
    root = importlib.import_module(package)
    names = [m.name for m in pkgutil.iter_modules(root.__path__, package + ".")]
    return [root, *(importlib.import_module(n) for n in names if not n.endswith("__main__"))]


DOCUMENTED = [
    *modules_of("threadbox.domain"),
    *modules_of("threadbox.application"),
    threadbox,
    errors,
    importlib.import_module("threadbox.audit"),
]


def undocumented(module: ModuleType) -> list[str]:
    """The public names ``module`` defines without a docstring (a dataclass's generated
    signature is no docstring), and their public methods and properties without one."""
    found = [] if (module.__doc__ or "").strip() else [module.__name__]
    for name, value in vars(module).items():
        defined_here = getattr(value, "__module__", None) == module.__name__
        if name.startswith("_") or not defined_here:
            continue
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        if not own_doc(value):
            found.append(f"{module.__name__}.{name}")
        if inspect.isclass(value):
            found += [f"{module.__name__}.{name}.{m}" for m in undocumented_members(value)]
    return found


def own_doc(value: object) -> str:
    doc = (value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__) or ""
    generated = inspect.isclass(value) and doc.startswith(f"{value.__name__}(")
    return "" if generated else doc.strip()


def undocumented_members(cls: type) -> list[str]:
    missing = []
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        function = getattr(member, "__func__", None) or getattr(member, "fget", None) or member
        if inspect.isfunction(function) and not (function.__doc__ or "").strip():
            missing.append(name)
    return missing


@pytest.mark.parametrize("module", DOCUMENTED, ids=lambda m: m.__name__)
def test_every_public_name_has_a_docstring(module: ModuleType) -> None:
    assert undocumented(module) == []


def test_every_public_method_of_the_mailbox_and_every_error_has_a_docstring() -> None:
    methods = [n for n, m in vars(Mailbox).items() if not n.startswith("_") and callable(m)]
    assert len(methods) >= 23
    assert [n for n in methods if not (getattr(Mailbox, n).__doc__ or "").strip()] == []
    assert [n for n in errors.__all__ if not own_doc(getattr(errors, n))] == []


def test_a_rebuild_and_a_verify_leave_the_garbage_collector_running(mailbox: Mailbox) -> None:
    for n in range(30):
        mailbox.deliver(f"t{n}", [Message.user("hello")])
    seen: list[bool] = []

    def progress(done: int, total: int) -> None:
        seen.append(gc.isenabled())

    assert gc.isenabled()
    mailbox.views.rebuild(progress)
    mailbox.views.verify(progress)
    assert seen and all(seen)
    assert gc.isenabled()


def test_the_http_api_registers_nothing_in_starlettes_process_wide_tables(
    mailbox: Mailbox,
) -> None:
    before = dict(starlette.convertors.CONVERTOR_TYPES)
    from threadbox.infrastructure.http import create_app

    create_app(mailbox)
    assert before == starlette.convertors.CONVERTOR_TYPES
