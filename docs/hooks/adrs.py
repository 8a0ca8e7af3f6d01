"""MkDocs hook: the decision records of the top-level ``ADRs/`` folder become pages.

``ADRs/`` stays the only copy: each record is served from there as ``adr/<file>``, listed in the
navigation under the ADR index page, and one line per record replaces the ``<!-- adr-index -->``
marker of ``adr.md``. A record added to the folder appears without touching the docs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

FOLDER = "ADRs"
INDEX = "adr.md"
MARKER = "<!-- adr-index -->"


def records(config: MkDocsConfig) -> list[Path]:
    """The ADR files, in number order."""
    root = Path(config.config_file_path).parent
    return sorted((root / FOLDER).glob("[0-9]*.md"))


def title(record: Path) -> str:
    """The record's first heading (``# 0001 — Layout and layering``)."""
    for line in record.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return record.stem


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """The index page's navigation entry becomes a section: the index, then every record."""
    nav: list[Any] = config.nav or []
    for position, entry in enumerate(nav):
        if isinstance(entry, dict) and list(entry.values()) == [INDEX]:
            (section,) = entry
            pages = [{"Index": INDEX}] + [
                {title(record): f"adr/{record.name}"} for record in records(config)
            ]
            nav[position] = {section: pages}
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for record in records(config):
        files.append(File.generated(config, f"adr/{record.name}", abs_src_path=str(record)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if page.file.src_uri != INDEX:
        return markdown
    lines = [f"- [{title(record)}](adr/{record.name})" for record in records(config)]
    return markdown.replace(MARKER, "\n".join(lines))
