"""Latency of `alloc-lint server`, from `didChange` to `publishDiagnostics`, and
of code actions, measured through a real LSP client over stdio.

    python bench/fetch.py vllm==0.21.0          # once: vLLM's sources, outside the repo
    python bench/server_latency.py              # report on stdout
    python bench/server_latency.py --out bench/out/server_latency.txt

Documents: generated 5,000-line modules of small functions with loops, where a
few functions have the ALC001 pattern (the text prefilter keeps the file, so
each check parses and analyses all of it), or every other one does (the worst
case: the analysis runs on hundreds of loops), or none calls an allocator (the
prefilter skips the file: the cost of a keystroke in a file that cannot
match); and vLLM 0.21.0's `mla_attention.py` (2,336 lines, 4 findings).

For each document the client makes one-character edits inside a comment, one
at a time (each waits for its diagnostics and a pause, as a typist's keystrokes
would), and times each edit from sending `didChange` to receiving the
`publishDiagnostics` of that version. Runs with the default debounce (the
delay the server waits for more keystrokes) and with none (the check alone).
Then the code actions: the light-bulb request (no LibCST), resolving the
preferred quick fix (LibCST, first one includes importing it) and the fix-all.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import fetch  # noqa: E402  bench/fetch.py

from alloc_lint import __version__, check_source, engine  # noqa: E402
from alloc_lint.config import Config  # noqa: E402
from alloc_lint.lsp.server import DEFAULT_DEBOUNCE_MS  # noqa: E402

PATTERN = '''

def merge_partials_{n}(chunks, lses, scale):
    """Merge per-chunk attention outputs ({n})."""
    output = None
    for attn_output, attn_lse in zip(chunks, lses):
        attn_output = attn_output * scale
        if output is None:
            output, output_lse = attn_output, attn_lse
        else:
            output_tmp = torch.empty_like(output)
            output_lse_tmp = torch.empty_like(output_lse)
            merge_attn_states(output=output_tmp, output_lse=output_lse_tmp,
                              prefix_output=output, prefix_lse=output_lse,
                              suffix_output=attn_output, suffix_lse=attn_lse)
            output = output_tmp
            output_lse = output_lse_tmp
    return output, output_lse
'''

PLAIN = '''

def project_{n}(x, weight, bias=None):
    # Loops, arithmetic, a buffer, a comprehension: no finding.
    total = torch.empty_like(x)
    for i in range(x.shape[0]):
        row = x[i] @ weight
        if bias is not None:
            row = row + bias
        total[i] = torch.relu(row)
    parts = [t.sum() for t in total.split(4)]
    return total, parts
'''


def generated(lines: int = 5000, every: int = 1) -> str:
    """A module of `lines` lines: functions with the pattern (one in `every`
    blocks) and functions without it."""
    parts, n = ['"""A generated module (bench/server_latency.py)."""\n# edit here: \nimport torch\n'], 0
    while True:
        block = (PATTERN if n % every == 0 else "") + PLAIN
        if sum(p.count("\n") for p in parts) + block.count("\n") > lines:
            break
        parts.append(block.format(n=n))
        n += 1
    text = "".join(parts)
    return text + "\n" * (lines - text.count("\n"))


class Client(LanguageClient):
    def __init__(self):
        super().__init__("server-latency", "1")
        self.arrived: dict[tuple[str, int], float] = {}

        @self.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def on_publish(params: lsp.PublishDiagnosticsParams):
            self.arrived.setdefault((params.uri, params.version), time.perf_counter())
            self.last = params

        @self.feature(lsp.CLIENT_REGISTER_CAPABILITY)
        def on_register(params):
            return None

        @self.feature(lsp.WINDOW_LOG_MESSAGE)
        def on_log(params):
            pass


async def wait_for(client: Client, key, timeout: float = 60) -> float:
    deadline = time.perf_counter() + timeout
    while key not in client.arrived:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"no diagnostics for {key}")
        await asyncio.sleep(0.0005)
    return client.arrived[key]


def edit_position(text: str) -> lsp.Position:
    """Just after the first `# ` comment marker: edits there change no finding."""
    for number, line in enumerate(text.split("\n")):
        if "# " in line and '"' not in line:
            return lsp.Position(number, line.index("# ") + 2)
    raise ValueError("no comment to edit")


async def session(text: str, uri: str, debounce: int | None, edits: int, pause: float, actions: bool):
    client = Client()
    await client.start_io(sys.executable, "-m", "alloc_lint.cli", "server")
    options = {} if debounce is None else {"debounce": debounce}
    caps = lsp.ClientCapabilities(text_document=lsp.TextDocumentClientCapabilities(
        code_action=lsp.CodeActionClientCapabilities(resolve_support=lsp.ClientCodeActionResolveOptions(["edit"]))))
    await client.initialize_async(lsp.InitializeParams(capabilities=caps, initialization_options=options))
    client.initialized(lsp.InitializedParams())
    sent = time.perf_counter()
    client.text_document_did_open(lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(uri, "python", 1, text)))
    opened = await wait_for(client, (uri, 1)) - sent
    findings = list(client.last.diagnostics)
    at = edit_position(text)
    times = []
    for version in range(2, edits + 2):
        await asyncio.sleep(pause)
        # Type a character, then delete it: the text alternates, every version is checked.
        typed = version % 2 == 0
        end = lsp.Position(at.line, at.character + (0 if typed else 1))
        change = lsp.TextDocumentContentChangePartial(range=lsp.Range(at, end), text="x" if typed else "")
        sent = time.perf_counter()
        client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            lsp.VersionedTextDocumentIdentifier(uri=uri, version=version), [change]))
        times.append(await wait_for(client, (uri, version)) - sent)
    result = {"open": opened, "edits": times, "findings": len(findings)}
    if actions and findings:
        version = edits + 1
        where = findings[0].range
        timings = {}
        for label in ("light bulb", "light bulb again"):
            sent = time.perf_counter()
            offered = await client.text_document_code_action_async(lsp.CodeActionParams(
                lsp.TextDocumentIdentifier(uri), where, lsp.CodeActionContext(diagnostics=[findings[0]])))
            timings[label] = time.perf_counter() - sent
        preferred = next(a for a in offered if a.is_preferred)
        for label in ("resolve quick fix (first, imports LibCST)", "resolve quick fix again"):
            sent = time.perf_counter()
            resolved = await client.code_action_resolve_async(preferred)
            timings[label] = time.perf_counter() - sent
            assert resolved.edit is not None, "the quick fix has no edit"
        sent = time.perf_counter()
        (fix_all,) = await client.text_document_code_action_async(lsp.CodeActionParams(
            lsp.TextDocumentIdentifier(uri), lsp.Range(lsp.Position(0, 0), lsp.Position(0, 0)),
            lsp.CodeActionContext(diagnostics=[], only=["source.fixAll"])))
        resolved = await client.code_action_resolve_async(fix_all)
        timings["fix all (request + resolve)"] = time.perf_counter() - sent
        assert resolved.edit is not None and version == client.last.version
        result["actions"] = timings
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return result


def check_cpu(text: str) -> float:
    """CPU seconds of the engine's check alone: what a busy machine's wall clock adds to is this."""
    config = Config()
    times = []
    for _ in range(5):
        start = time.process_time()
        engine.check_text(text, "bench.py", config)
        times.append(time.process_time() - start)
    return statistics.median(times)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return f"median {ms(statistics.median(times))} ms, p90 {ms(p90)} ms, max {ms(max(times))} ms"


async def main_async(args) -> str:
    mla = fetch.fetch("vllm==0.21.0") / "vllm/model_executor/layers/attention/mla_attention.py"
    worst, typical = generated(5000), generated(5000, every=100)
    skipped = typical.replace("torch.empty_like", "new_buffer")
    docs = [
        ("generated, 5,000 lines, a few functions with the pattern", typical, "file:///bench/typical.py"),
        ("generated, 5,000 lines, every other function has the pattern (worst case)", worst,
         "file:///bench/worst.py"),
        ("generated, 5,000 lines, skipped by the text prefilter (no allocator call)", skipped,
         "file:///bench/skipped.py"),
        (f"vLLM 0.21.0 mla_attention.py, {mla.read_text().count(chr(10)):,} lines", mla.read_text(),
         mla.as_uri()),
    ]
    out = [
        "alloc-lint server latency (bench/server_latency.py)",
        f"date (UTC): {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}",
        f"alloc-lint {__version__}; Python {platform.python_version()}; {os.cpu_count()} cores; "
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
        "(other jobs on the machine stretch every wall-clock figure below; the CPU times less so)",
        f"command: python bench/server_latency.py --edits {args.edits} --pause {args.pause}",
        "",
        "didChange -> publishDiagnostics, one-character edits in a comment "
        f"({args.edits} edits, {args.pause * 1000:.0f} ms apart):",
    ]
    for label, text, uri in docs:
        out.append(f"- {label} ({len(check_source(text))} findings):")
        out.append(f"    CPU time of one check in this process (engine.check_text, median of 5): "
                   f"{ms(check_cpu(text))} ms")
        for debounce in (None, 0):
            name = f"default debounce {DEFAULT_DEBOUNCE_MS} ms" if debounce is None else "no debounce (check alone)"
            result = await session(text, uri, debounce, args.edits, args.pause, actions=debounce == 0)
            out.append(f"    {name}: {summary(result['edits'])}; didOpen -> publish {ms(result['open'])} ms")
            for action, seconds in result.get("actions", {}).items():
                out.append(f"    code action, {action}: {ms(seconds)} ms")
    out.append(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=30)
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between edits")
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    sys.stdout.write(report)
    if args.out:
        Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
