"""The named SQL blocks of ``sql/queries.sql``, split once at import.

A block starts with ``-- name --`` on a line of its own; the next comment line
describes it and lists the ``$n`` parameters in order; the rest, up to the
next block, is the SQL. ``QUERIES["claim"]`` is the text handed to asyncpg.
"""

from __future__ import annotations

import re
from importlib import resources

SQL_PACKAGE = "workerfleet.worker"
QUERIES_FILE = "queries.sql"

_BLOCK_HEADER = re.compile(r"^-- ([a-z0-9_]+) --$", re.MULTILINE)


class QueryFileError(ValueError):
    """queries.sql is malformed (a duplicate or empty block)."""


def sql_text(*parts: str) -> str:
    """The text of a file under ``worker/sql/``, e.g. ``sql_text("schema.sql")``."""
    resource = resources.files(SQL_PACKAGE).joinpath("sql", *parts)
    return resource.read_text(encoding="utf-8")


def parse_queries(text: str) -> dict[str, str]:
    """Split ``text`` into ``{name: sql}``; the preamble before the first block is dropped."""
    headers = list(_BLOCK_HEADER.finditer(text))
    queries: dict[str, str] = {}
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        name = header.group(1)
        body = text[header.end() : end].strip()
        if name in queries:
            raise QueryFileError(f"query {name!r} is defined twice in {QUERIES_FILE}")
        if not _strip_comments(body):
            raise QueryFileError(f"query {name!r} in {QUERIES_FILE} has no SQL")
        queries[name] = body
    return queries


def _strip_comments(body: str) -> str:
    return "\n".join(
        line for line in body.splitlines() if line.strip() and not line.lstrip().startswith("--")
    )


QUERIES: dict[str, str] = parse_queries(sql_text(QUERIES_FILE))
