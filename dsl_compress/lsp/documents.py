"""The documents open in the editor: their unsaved text by URI and by file, read before disk
when a rules file includes them, and which files each checked document included."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from pygls import uris
from pygls.workspace import Workspace


def path_of(uri: str) -> Path | None:
    """The file a URI names, symlinks resolved; None for a URI that is not a file's."""
    path = uris.to_fs_path(uri)
    return Path(path).resolve() if path and uri.startswith("file:") else None


def uri_of(path: Path) -> str:
    """The file URI of a path."""
    return uris.from_fs_path(str(path)) or path.as_uri()


class OpenDocuments:
    """The workspace's text documents, looked up by URI or by the file they hold
    (``workspace`` gives pygls's, which exists once the client has initialized)."""

    def __init__(self, workspace: Callable[[], Workspace]) -> None:
        self._get_workspace = workspace

    @property
    def _workspace(self) -> Workspace:
        return self._get_workspace()

    def uris(self) -> list[str]:
        """The URIs of the open documents."""
        return list(self._workspace.text_documents)

    def is_open(self, uri: str) -> bool:
        return uri in self._workspace.text_documents

    def text(self, uri: str) -> str:
        """An open document's text as the editor has it (saved or not)."""
        return self._workspace.get_text_document(uri).source

    def version(self, uri: str) -> int | None:
        """An open document's version; None for one that is not open."""
        return self._workspace.get_text_document(uri).version if self.is_open(uri) else None

    def opened_as(self) -> dict[Path, str]:
        """The URI each open file was opened under, by its resolved path (a file opened
        through a symlinked folder keeps the URI its editor knows)."""
        found = {}
        for uri in self.uris():
            path = path_of(uri)
            if path is not None:
                found.setdefault(path, uri)
        return found

    def buffers(self) -> dict[Path, str]:
        """Each open file's unsaved text, by its resolved path."""
        found = {}
        for uri in self.uris():
            path = path_of(uri)
            if path is not None:
                found[path] = self.text(uri)
        return found
