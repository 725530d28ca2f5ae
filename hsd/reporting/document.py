"""A report as a list of plain blocks, rendered to Markdown and to HTML by separate renderers.

Building the content once and rendering it twice keeps ``report.md`` and ``report.html``
saying exactly the same thing: a number cannot be right in one and stale in the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str  # plain text; `backticks` mark code in both renderers


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


@dataclass(frozen=True)
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    path: Path  # a PNG; Markdown links it relative to the report, HTML embeds it
    caption: str


@dataclass(frozen=True)
class Preformatted:
    text: str


Block = Union[Heading, Paragraph, Bullets, Table, Figure, Preformatted]


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> "Document":
        self.blocks.extend(blocks)
        return self
