"""The server: pygls's LanguageServer with each feature wired to its module, over stdio."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from dsl_compress import __version__
from dsl_compress.diagnostics import CompressionError
from dsl_compress.language.includes import TextsFirst
from dsl_compress.lsp.checker import DEFAULT_DEBOUNCE, Checker
from dsl_compress.lsp.code_actions import quick_fixes
from dsl_compress.lsp.completion import complete, text_before
from dsl_compress.lsp.definition import definition
from dsl_compress.lsp.documents import OpenDocuments, path_of
from dsl_compress.lsp.formatting import format_edits
from dsl_compress.lsp.hover import hover_text
from dsl_compress.lsp.outline import Outline
from dsl_compress.lsp.positions import from_position, split_lines
from dsl_compress.lsp.project import Project
from dsl_compress.lsp.symbols import document_symbols
from dsl_compress.resolve.model_index import ModelIndex

NAME = "dsl-compress"
TRIGGERS = [".", "=", " ", ","]


class RulesServer(LanguageServer):
    """The language server of .rules files: its open documents, their checks and project."""

    def __init__(self, project: Project, debounce: float) -> None:
        super().__init__(NAME, __version__)
        self.project = project
        self.documents = OpenDocuments(lambda: self.workspace)
        self.checker = Checker(
            self.documents, project, self.text_document_publish_diagnostics, debounce
        )
        self._outlines: dict[str, tuple[int | None, Outline]] = {}

    def outline(self, uri: str) -> Outline:
        """The document's statements, parsed once per version."""
        version = self.documents.version(uri)
        cached = self._outlines.get(uri)
        if cached is None or cached[0] != version:
            cached = (version, Outline.of(self.documents.text(uri), _path_text(uri)))
            self._outlines[uri] = cached
        return cached[1]

    def lines(self, uri: str) -> list[str]:
        return split_lines(self.documents.text(uri))

    def model_index(self, uri: str) -> ModelIndex | None:
        """The index of the document's manifest model; None without one (or one that does not
        read: the diagnostics say so)."""
        path = path_of(uri)
        try:
            model = self.project.model_for(path) if path is not None else None
        except CompressionError:
            return None
        return ModelIndex.of(model) if model is not None else None

    def forget(self, uri: str) -> None:
        self._outlines.pop(uri, None)


def _reader(buffers: dict[Path, str]):
    """A file's text: its open buffer, else the disk's; None when neither reads."""
    read = TextsFirst(buffers)

    def text(path: Path) -> str | None:
        try:
            return read(path, None)
        except CompressionError:
            return None

    return text


def _path_text(uri: str) -> str | None:
    path = path_of(uri)
    return str(path) if path is not None else None


def build_server(manifest: Path | None = None, debounce: float = DEFAULT_DEBOUNCE) -> RulesServer:
    """The server with every feature registered; ``manifest`` for every file (else each
    file's project setting names its own), ``debounce`` seconds between an edit and its check."""
    server = RulesServer(Project(manifest), debounce)
    _register_sync(server)
    _register_queries(server)
    return server


def _register_sync(server: RulesServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: types.DidOpenTextDocumentParams) -> None:
        server.checker.changed(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: types.DidChangeTextDocumentParams) -> None:
        server.checker.changed(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(params: types.DidSaveTextDocumentParams) -> None:
        server.checker.changed(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: types.DidCloseTextDocumentParams) -> None:
        server.forget(params.text_document.uri)
        server.checker.closed(params.text_document.uri)


def _register_queries(server: RulesServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(params: types.HoverParams) -> types.Hover | None:
        uri = params.text_document.uri
        published = server.checker.published(uri)
        text = hover_text(
            server.outline(uri),
            server.lines(uri),
            params.position,
            server.model_index(uri),
            published,
        )
        if text is None:
            return None
        return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, text))

    options = types.CompletionOptions(trigger_characters=TRIGGERS)

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, options)
    def completion(params: types.CompletionParams) -> types.CompletionList:
        uri = params.text_document.uri
        lines = server.lines(uri)
        line, column = from_position(lines, params.position)
        lets = list(server.outline(uri).lets())
        items = complete(text_before(lines, line, column), lets, server.model_index(uri))
        return types.CompletionList(is_incomplete=False, items=items)

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    def goto_definition(params: types.DefinitionParams) -> types.Location | None:
        uri = params.text_document.uri
        lines = server.lines(uri)
        position = from_position(lines, params.position)
        read = _reader(server.documents.buffers())
        return definition(server.outline(uri), lines, uri, path_of(uri), position, read)

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def symbols(params: types.DocumentSymbolParams) -> list[types.DocumentSymbol]:
        uri = params.text_document.uri
        return document_symbols(server.outline(uri), server.lines(uri))

    actions = types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix])

    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION, actions)
    def code_action(params: types.CodeActionParams) -> list[types.CodeAction]:
        return quick_fixes(params.text_document.uri, params.context.diagnostics)

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    def formatting(params: types.DocumentFormattingParams) -> list[types.TextEdit]:
        uri = params.text_document.uri
        return format_edits(server.documents.text(uri), _path_text(uri))


def serve(manifest: Path | None = None, debounce: float = DEFAULT_DEBOUNCE) -> None:
    """Serve over stdin and stdout until the client says exit."""
    build_server(manifest, debounce).start_io()
