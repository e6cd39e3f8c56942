"""Diagnostics as you type: each edit re-checks its document (and the open documents that
include it) after a short pause, an edit during the pause replacing the pending check, and publishes per file the union
of what every open document's check found there."""

from __future__ import annotations

import asyncio
from typing import Callable

from lsprotocol import types

from dsl_compress.language.parse import StatementCache
from dsl_compress.lsp.diagnostics import Checked, check_document
from dsl_compress.lsp.documents import OpenDocuments, path_of
from dsl_compress.lsp.project import Project

Publish = Callable[[types.PublishDiagnosticsParams], None]

# Long enough to let a burst of keystrokes pass, short enough to feel immediate.
DEFAULT_DEBOUNCE = 0.3


class Checker:
    """The checks of the open documents: pending (one per document, the newest edit's) and
    done (what each found, per file it reached)."""

    def __init__(
        self, documents: OpenDocuments, project: Project, publish: Publish, debounce: float
    ) -> None:
        self._documents = documents
        self._project = project
        self._publish = publish
        self._debounce = debounce
        self._pending: dict[str, asyncio.Task] = {}
        self._found: dict[str, Checked] = {}
        # Each open document's statements as last parsed: a keystroke re-parses one statement.
        self._parsed: dict[str, StatementCache] = {}

    def changed(self, uri: str) -> None:
        """An edit (or an open, or a save): check the document and every open includer."""
        for root in [uri, *self._includers(uri)]:
            self._schedule(root)

    def closed(self, uri: str) -> None:
        """A closed document: its findings go; its includers read it from disk again."""
        task = self._pending.pop(uri, None)
        if task is not None:
            task.cancel()
        before = self._found.pop(uri, None)
        self._parsed.pop(uri, None)
        self._publish_files(set(before.by_uri) if before else {uri})
        for root in self._includers(uri):
            self._schedule(root)

    def _includers(self, uri: str) -> list[str]:
        """The open documents whose last check read ``uri``'s file, or could not read one of
        its includes (a missing file may be the one just opened or saved)."""
        path = path_of(uri)
        return [
            root
            for root, done in self._found.items()
            if root != uri and (path in done.included or _include_failed(done))
        ]

    def _schedule(self, uri: str) -> None:
        task = self._pending.pop(uri, None)
        if task is not None:
            task.cancel()
        self._pending[uri] = asyncio.get_running_loop().create_task(self._check_later(uri))

    async def _check_later(self, uri: str) -> None:
        await asyncio.sleep(self._debounce)
        self._pending.pop(uri, None)
        if not self._documents.is_open(uri):
            return
        # On the event loop, not a worker thread: no edit lands mid-check (an edit during the
        # pause cancelled this task), and a thread fighting the loop for the GIL took 30% longer.
        text, buffers = self._documents.text(uri), self._documents.buffers()
        cache = self._parsed.setdefault(uri, StatementCache())
        opened = self._documents.opened_as()
        checked = check_document(uri, text, buffers, self._project, cache, opened)
        before = self._found.get(uri)
        self._found[uri] = checked
        self._publish_files(set(checked.by_uri) | (set(before.by_uri) if before else set()))

    def _publish_files(self, file_uris: set[str]) -> None:
        for file_uri in sorted(file_uris):
            params = types.PublishDiagnosticsParams(
                uri=file_uri,
                diagnostics=self._union(file_uri),
                version=self._documents.version(file_uri),
            )
            self._publish(params)

    def _union(self, file_uri: str) -> list[types.Diagnostic]:
        """What every open document's check found in this file, each finding once."""
        seen: dict[tuple, types.Diagnostic] = {}
        for checked in self._found.values():
            for diag in checked.by_uri.get(file_uri, ()):
                where = (diag.range.start.line, diag.range.start.character)
                seen.setdefault((where, diag.code, diag.message), diag)
        return sorted(seen.values(), key=lambda d: (d.range.start.line, d.range.start.character))

    def published(self, file_uri: str) -> list[types.Diagnostic]:
        """What was last published for a file."""
        return self._union(file_uri)


# An include that could not be read: missing, outside the root, or in a cycle.
_INCLUDE_CODES = ("E205", "E206", "E219")


def _include_failed(done: Checked) -> bool:
    return any(d.code in _INCLUDE_CODES for found in done.by_uri.values() for d in found)
