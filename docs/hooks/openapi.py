"""MkDocs hook: the HTTP API page's table of routes and their errors comes from the app's own
OpenAPI document, and that document is published beside the pages as ``openapi.json``.

The marker ``<!-- openapi-routes -->`` in ``http-api.md`` becomes one row per operation: method and
path, operation id, summary, success status and every declared error status with its codes.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

PAGE = "http-api.md"
MARKER = "<!-- openapi-routes -->"


@cache
def document() -> dict[str, Any]:
    import threadbox
    from threadbox.infrastructure.http import create_app

    with threadbox.open("memory://") as mailbox:
        return create_app(mailbox).openapi()


def codes(response: dict[str, Any]) -> str:
    schema = response["content"]["application/problem+json"]["schema"]
    return ", ".join(f"`{code}`" for code in schema["properties"]["code"]["enum"])


def routes_table() -> str:
    rows = [
        "| route | operation | success | errors |",
        "| --- | --- | --- | --- |",
    ]
    for path, operations in document()["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            success = ", ".join(s for s in responses if s.startswith(("2", "3")))
            errors = "<br>".join(
                f"{status} {codes(response)}"
                for status, response in responses.items()
                if not status.startswith(("2", "3"))
            )
            route = f"`{method.upper()} {path}`"
            rows.append(
                f"| {route} | `{operation['operationId']}`<br>{operation['summary']} "
                f"| {success} | {errors} |"
            )
    return "\n".join(rows)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    content = json.dumps(document(), indent=2)
    files.append(File.generated(config, "openapi.json", content=content))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    return markdown.replace(MARKER, routes_table())
