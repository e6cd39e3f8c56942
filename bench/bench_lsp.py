"""The language server's response to a keystroke: from a didChange of a 1,000-statement file to
its published diagnostics, through the real `dsl-compress lsp` over stdio (pygls's client), the
debounce pause set to 0 so that only the work is timed."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from measure import print_table, write_results
from rules_workloads import rules_text

TARGET_S = 0.100  # a keystroke's diagnostics on the 1,000-statement file
REPO = Path(__file__).resolve().parent.parent


class Probe:
    """A client that times each change until the server publishes for its version."""

    def __init__(self) -> None:
        self.client = LanguageClient("bench", "1")
        self.arrived: dict[int, float] = {}
        self.event = asyncio.Event()
        self.client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)(lambda p: self._published(p))

    def _published(self, params: types.PublishDiagnosticsParams) -> None:
        if params.version is not None:
            self.arrived.setdefault(params.version, time.perf_counter())
            self.event.set()

    async def wait_for(self, version: int) -> float:
        while version not in self.arrived:
            self.event.clear()
            await asyncio.wait_for(self.event.wait(), 120)
        return self.arrived[version]


async def measure(statements: int, edits: int) -> list[float]:
    probe = Probe()
    client = probe.client
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "large.rules"
        text = rules_text(statements)
        path.write_text(text)
        await client.start_io(
            sys.executable, "-m", "dsl_compress", "lsp", "--debounce", "0", cwd=folder, env=env
        )
        params = types.InitializeParams(capabilities=types.ClientCapabilities())
        await client.initialize_async(params)
        client.initialized(types.InitializedParams())
        uri = path.resolve().as_uri()
        item = types.TextDocumentItem(uri=uri, language_id="rules", version=1, text=text)
        client.text_document_did_open(types.DidOpenTextDocumentParams(item))
        await probe.wait_for(1)
        times = {}
        for kind, edit in EDITS.items():
            start = 2 + len(times) * edits
            versions = range(start, start + edits)
            times[kind] = [await _edit(probe, uri, edit(text, v), v) for v in versions]
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
    return times


def _typed(text: str, version: int) -> str:
    """A digit of the first let's value typed: the statements after it stay where they were."""
    return text.replace("let ratio = 0.5", f"let ratio = 0.{version % 9 + 1}", 1)


def _line_broken(text: str, version: int) -> str:
    """Enter pressed on the first line (every other time taken back): every statement after
    it moves a line, and is parsed again."""
    return text.replace("\n", "\n\n", 1) if version % 2 else text


EDITS = {"a character typed": _typed, "a line break typed at the top": _line_broken}


async def _edit(probe: Probe, uri: str, edited: str, version: int) -> float:
    """One keystroke's text sent, its diagnostics awaited."""
    document = types.VersionedTextDocumentIdentifier(uri=uri, version=version)
    change = types.TextDocumentContentChangeWholeDocument(text=edited)
    sent = time.perf_counter()
    probe.client.text_document_did_change(types.DidChangeTextDocumentParams(document, [change]))
    return await probe.wait_for(version) - sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--statements", type=int, default=1000)
    parser.add_argument("--edits", type=int, default=30)
    args = parser.parse_args()
    found = asyncio.run(measure(args.statements, args.edits))
    rows, medians = [], {}
    for kind, times in found.items():
        medians[kind] = median = statistics.median(times)
        p90 = sorted(times)[int(0.9 * (len(times) - 1))]
        rows.append([f"{kind}, {args.statements} statements", median, p90, max(times)])
    print_table(["didChange -> diagnostics", "median s", "p90 s", "max s"], rows)
    for kind, median in medians.items():
        verdict = "meets" if median < TARGET_S else "misses"
        print(f"{kind}: median {median * 1000:.1f} ms {verdict} the target of 100 ms")
    payload = {"statements": args.statements, "edits": args.edits, "seconds": found}
    write_results("lsp", {**payload, "median_s": medians, "target_s": TARGET_S})


if __name__ == "__main__":
    main()
