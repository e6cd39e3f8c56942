"""Driving the real `dsl-compress lsp` over stdio with pygls's own LanguageClient: a session
that opens, edits and queries documents and waits for the diagnostics the server publishes."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

from lsprotocol import types
from pygls.lsp.client import LanguageClient

REPO = Path(__file__).resolve().parent.parent
# Generous: the first check of a session builds the grammar's parser; no test asserts a time.
WAIT = 60.0


class Session:
    """One server process and the diagnostics it has published, by URI."""

    def __init__(self, client: LanguageClient) -> None:
        self.client = client
        self.published: dict[str, list[types.PublishDiagnosticsParams]] = {}
        self._arrived = asyncio.Event()
        self._versions: dict[str, int] = {}

    def received(self, params: types.PublishDiagnosticsParams) -> None:
        self.published.setdefault(params.uri, []).append(params)
        self._arrived.set()

    def open(self, path: Path, text: str | None = None, resolve: bool = True) -> str:
        """Open ``path`` (under its resolved URI, or as given: a symlinked folder's)."""
        uri = (path.resolve() if resolve else path.absolute()).as_uri()
        text = path.read_text(encoding="utf-8") if text is None else text
        self._versions[uri] = 1
        item = types.TextDocumentItem(uri=uri, language_id="rules", version=1, text=text)
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(item))
        return uri

    def change(self, uri: str, text: str) -> None:
        """Replace the whole text (a full-document change)."""
        self._versions[uri] += 1
        document = types.VersionedTextDocumentIdentifier(uri=uri, version=self._versions[uri])
        change = types.TextDocumentContentChangeWholeDocument(text=text)
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(document, [change]))

    def close(self, uri: str) -> None:
        document = types.TextDocumentIdentifier(uri=uri)
        self.client.text_document_did_close(types.DidCloseTextDocumentParams(document))

    async def diagnostics(
        self, uri: str, until: Callable[[list[types.Diagnostic]], bool] = lambda found: True
    ) -> list[types.Diagnostic]:
        """The latest diagnostics published for ``uri`` once they satisfy ``until``."""

        async def arrived() -> list[types.Diagnostic]:
            while True:
                latest = self.published.get(uri)
                if latest and until(list(latest[-1].diagnostics)):
                    return list(latest[-1].diagnostics)
                self._arrived.clear()
                await self._arrived.wait()

        return await asyncio.wait_for(arrived(), WAIT)

    async def hover(self, uri: str, line: int, character: int) -> str | None:
        params = types.HoverParams(_doc(uri), types.Position(line, character))
        found = await self.client.text_document_hover_async(params)
        return None if found is None else found.contents.value

    async def completion(self, uri: str, line: int, character: int) -> list[str]:
        params = types.CompletionParams(_doc(uri), types.Position(line, character))
        found = await self.client.text_document_completion_async(params)
        items = found.items if isinstance(found, types.CompletionList) else found or []
        return [item.label for item in items]

    async def definition(self, uri: str, line: int, character: int) -> Any:
        params = types.DefinitionParams(_doc(uri), types.Position(line, character))
        return await self.client.text_document_definition_async(params)

    async def symbols(self, uri: str) -> list:
        params = types.DocumentSymbolParams(_doc(uri))
        return await self.client.text_document_document_symbol_async(params)

    async def code_actions(
        self, uri: str, diagnostics: list[types.Diagnostic]
    ) -> list[types.CodeAction]:
        where = diagnostics[0].range if diagnostics else types.Range(_origin(), _origin())
        context = types.CodeActionContext(diagnostics=diagnostics)
        params = types.CodeActionParams(_doc(uri), where, context)
        return await self.client.text_document_code_action_async(params) or []

    async def formatting(self, uri: str) -> list[types.TextEdit]:
        options = types.FormattingOptions(tab_size=2, insert_spaces=True)
        params = types.DocumentFormattingParams(_doc(uri), options)
        return await self.client.text_document_formatting_async(params) or []


def _origin() -> types.Position:
    return types.Position(0, 0)


def _doc(uri: str) -> types.TextDocumentIdentifier:
    return types.TextDocumentIdentifier(uri=uri)


def run_session(cwd: Path, body: Callable[[Session], Awaitable[Any]], *server_args: str) -> Any:
    """Start the server in ``cwd``, initialize, run ``body``, shut the server down cleanly."""
    return asyncio.run(asyncio.wait_for(_session(cwd, body, server_args), 4 * WAIT))


async def _session(cwd: Path, body, server_args) -> Any:
    client = LanguageClient("dsl-compress-tests", "1")
    session = Session(client)
    client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)(lambda params: session.received(params))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    command = ("-m", "dsl_compress", "lsp", "--debounce", "0.05", *server_args)
    await client.start_io(sys.executable, *command, cwd=str(cwd), env=env)
    try:
        capabilities = types.ClientCapabilities()
        params = types.InitializeParams(capabilities=capabilities, process_id=os.getpid())
        await client.initialize_async(params)
        client.initialized(types.InitializedParams())
        return await body(session)
    finally:
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
