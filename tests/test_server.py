"""`alloc-lint server` through a real LSP client: pytest-lsp starts the server
as an editor would (`python -m alloc_lint.cli server` over stdio) and speaks
LSP to it with the capabilities that VS Code, Neovim and Emacs announce.

Expectations come from the engine's public API (the same findings as `alloc-lint
check`, the same rewrites as `alloc-lint fix`); positions are recomputed
from the text by tests/lsp_reference.py, independently of the server's own conversion."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

pytest.importorskip("pytest_lsp")

import pytest_lsp  # noqa: E402
from lsprotocol import types as lsp  # noqa: E402
from pygls.protocol import default_converter  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities  # noqa: E402
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features  # noqa: E402

from pygls.uris import to_fs_path  # noqa: E402

import alloc_lint  # noqa: E402
from lsp_reference import apply, position  # noqa: E402  tests/lsp_reference.py
from alloc_lint import docs  # noqa: E402
from alloc_lint.rules import rule_by_code  # noqa: E402
from alloc_lint.api import attach_edits  # noqa: E402
from alloc_lint.config import ConfigError, for_file  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVER = [sys.executable, "-m", "alloc_lint.cli", "server"]
TIMEOUT = 20  # seconds; generous for a loaded CI machine

SOURCE = '''import torch


def merge_chunks(chunks, lses):
    output = None
    for attn_output, attn_lse in zip(chunks, lses):
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

# Non-ASCII before the findings on their lines: a 2-unit UTF-16 character, and
# identifiers in Greek (1 UTF-16 unit, 2 UTF-8 bytes per letter).
NON_ASCII = '''import torch


def merge_chunks(chunks, lses):
    output = None
    for attn_output, attn_lse in zip(chunks, lses):
        if output is None:
            output, output_lse = attn_output, attn_lse
        else:
            note = "😀 σ"; output_tmp = torch.empty_like(output)
            σ_lse_tmp = torch.empty_like(output_lse)
            merge_attn_states(output=output_tmp, output_lse=σ_lse_tmp,
                              prefix_output=output, prefix_lse=output_lse,
                              suffix_output=attn_output, suffix_lse=attn_lse)
            output = output_tmp
            output_lse = σ_lse_tmp
    return output, output_lse
'''


# --- a client that keeps every publishDiagnostics, with its version ----------------------


def recording_client() -> LanguageClient:
    client = LanguageClient(converter_factory=default_converter)
    client.published = []

    def on_publish(client: LanguageClient, params: lsp.PublishDiagnosticsParams):
        client.diagnostics[params.uri] = params.diagnostics
        client.published.append(params)

    def on_register(client: LanguageClient, params: lsp.RegistrationParams):
        client.registrations.extend(params.registrations)

    client.registrations = []
    register_lsp_features(client, {**DEFAULT_CLIENT_FEATURES, lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS: on_publish,
                                   lsp.CLIENT_REGISTER_CAPABILITY: on_register})
    return client


CONFIG = ClientServerConfig(server_command=SERVER, client_factory=recording_client)


async def start(client: LanguageClient, editor: str, **options):
    await client.initialize_session(lsp.InitializeParams(
        capabilities=client_capabilities(editor), initialization_options=options))


@pytest_lsp.fixture(config=CONFIG, scope="module")
async def vscode(lsp_client: LanguageClient):
    await start(lsp_client, "visual_studio_code", debounce=0)
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=CONFIG, scope="module")
async def neovim(lsp_client: LanguageClient):
    await start(lsp_client, "neovim@v0.11.0", debounce=0)  # negotiates UTF-8 positions
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=CONFIG, scope="module")
async def emacs(lsp_client: LanguageClient):
    # UTF-32 positions, no lazy code action resolution; changes wait a minute,
    # so only opening and saving publish.
    await start(lsp_client, "emacs", debounce=60_000)
    yield
    await lsp_client.shutdown_session()


async def published(client: LanguageClient, uri: str, version: int | None):
    """The diagnostics published for `uri` at `version` (waits for them)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for params in client.published:
            if params.uri == uri and params.version == version:
                return list(params.diagnostics)
        await asyncio.sleep(0.005)
    raise AssertionError(f"no diagnostics published for {uri} version {version}")


def open_doc(client: LanguageClient, path, text: str, version: int = 1) -> str:
    uri = path.as_uri()
    client.text_document_did_open(lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(uri, "python", version, text)))
    return uri


def text_edits(edit: lsp.WorkspaceEdit, uri: str) -> list[lsp.TextEdit]:
    if edit.document_changes:
        (change,) = edit.document_changes
        assert change.text_document.uri == uri
        return list(change.edits)
    return list(edit.changes[uri])


def send_edits(client: LanguageClient, uri: str, version: int, edits: list[lsp.TextEdit]) -> None:
    """Send a workspace edit back the way an editor does: incremental changes,
    last one first so that each range still means what it meant."""
    ordered = sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True)
    client.text_document_did_change(lsp.DidChangeTextDocumentParams(
        lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
        [lsp.TextDocumentContentChangePartial(range=e.range, text=e.new_text) for e in ordered]))


def change(client: LanguageClient, uri: str, version: int, *changes) -> None:
    client.text_document_did_change(lsp.DidChangeTextDocumentParams(
        lsp.VersionedTextDocumentIdentifier(uri=uri, version=version), list(changes)))


def whole(text: str) -> lsp.TextDocumentContentChangeWholeDocument:
    return lsp.TextDocumentContentChangeWholeDocument(text=text)


def ranges(diagnostics) -> list[tuple]:
    return [(d.code, (d.range.start.line, d.range.start.character), (d.range.end.line, d.range.end.character))
            for d in diagnostics]


def expected_ranges(text: str, encoding: str = "utf-16") -> list[tuple]:
    return [(d.code, position(text, d.line, d.column, encoding), position(text, d.end_line, d.end_column, encoding))
            for d in alloc_lint.check_source(text)]


async def actions(client, uri, diagnostic=None, only=None, line=None):
    if diagnostic is not None:
        where, context = diagnostic.range, [diagnostic]
    else:
        where, context = lsp.Range(lsp.Position(line or 0, 0), lsp.Position(line or 0, 0)), []
    return list(await client.text_document_code_action_async(lsp.CodeActionParams(
        lsp.TextDocumentIdentifier(uri), where, lsp.CodeActionContext(diagnostics=context, only=only))) or [])


# --- diagnostics --------------------------------------------------------------------------


async def test_open_publishes_the_findings_of_check(vscode: LanguageClient, tmp_path):
    uri = open_doc(vscode, tmp_path / "m.py", SOURCE)
    found = await published(vscode, uri, 1)
    expected = alloc_lint.check_source(SOURCE, "m.py")
    assert len(expected) == 2
    assert ranges(found) == expected_ranges(SOURCE)
    assert [d.message for d in found] == [d.message for d in expected]
    assert {(d.source, d.severity) for d in found} == {("alloc-lint", lsp.DiagnosticSeverity.Warning)}
    page = found[0].code_description.href
    assert page.startswith("file://")
    with open(to_fs_path(page), encoding="utf-8") as handle:
        assert handle.read() == docs.page(rule_by_code("ALC001"))
    # VS Code registers watchers dynamically: the server asks to hear of pyproject.toml changes.
    (watch,) = vscode.registrations
    assert watch.method == lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES
    assert watch.register_options["watchers"] == [{"globPattern": "**/pyproject.toml"}]


async def test_changes_update_findings_and_a_syntax_error_clears_them(vscode: LanguageClient, tmp_path):
    uri = open_doc(vscode, tmp_path / "c.py", SOURCE)
    assert len(await published(vscode, uri, 1)) == 2
    # Break the loop header: nothing stale may stay on screen, and the server lives on.
    edit = lsp.TextDocumentContentChangePartial(range=lsp.Range(lsp.Position(5, 50), lsp.Position(5, 51)), text="")
    change(vscode, uri, 2, edit)
    assert await published(vscode, uri, 2) == []
    restore = lsp.TextDocumentContentChangePartial(range=lsp.Range(lsp.Position(5, 50), lsp.Position(5, 50)), text=":")
    change(vscode, uri, 3, restore)
    assert ranges(await published(vscode, uri, 3)) == expected_ranges(SOURCE)
    # A noqa typed at the end of the first allocation's line silences that finding only.
    line = SOURCE.splitlines()[9]
    noqa = lsp.TextDocumentContentChangePartial(range=lsp.Range(lsp.Position(9, len(line)), lsp.Position(9, len(line))),
                                                text="  # noqa: ALC001")
    change(vscode, uri, 4, noqa)
    assert [d.range.start.line for d in await published(vscode, uri, 4)] == [10]
    # Closing the buffer clears its findings.
    vscode.text_document_did_close(lsp.DidCloseTextDocumentParams(lsp.TextDocumentIdentifier(uri)))
    assert await published(vscode, uri, None) == []


async def test_other_languages_are_left_alone(vscode: LanguageClient, tmp_path):
    uri = (tmp_path / "notes.md").as_uri()
    vscode.text_document_did_open(lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(uri, "markdown", 1, SOURCE)))
    script = open_doc(vscode, tmp_path / "script", SOURCE)  # a Python buffer without the suffix
    assert len(await published(vscode, script, 1)) == 2
    assert not [p for p in vscode.published if p.uri == uri]
    assert await actions(vscode, uri, line=9) == []


async def test_a_whole_document_change_and_a_file_without_findings(vscode: LanguageClient, tmp_path):
    uri = open_doc(vscode, tmp_path / "w.py", "x = 1\n")
    assert await published(vscode, uri, 1) == []
    change(vscode, uri, 2, whole(SOURCE))
    assert len(await published(vscode, uri, 2)) == 2


async def test_non_ascii_columns_in_utf16(vscode: LanguageClient, tmp_path):
    uri = open_doc(vscode, tmp_path / "u.py", NON_ASCII)
    found = await published(vscode, uri, 1)
    assert ranges(found) == expected_ranges(NON_ASCII, "utf-16")
    line = NON_ASCII.splitlines()[9]
    # The emoji counts two UTF-16 units: one more than its one character.
    assert found[0].range.start.character == line.index("torch") + 1


async def test_non_ascii_columns_in_utf8(neovim: LanguageClient, tmp_path):
    uri = open_doc(neovim, tmp_path / "u8.py", NON_ASCII)
    found = await published(neovim, uri, 1)
    assert ranges(found) == expected_ranges(NON_ASCII, "utf-8")
    assert found[1].range.start.character == len("            σ_lse_tmp = ".encode())


async def test_incremental_changes_after_form_feeds_and_line_separators(vscode: LanguageClient, tmp_path):
    # str.splitlines would break these lines in two; Python and LSP do not.
    text = "# a comment\x0c with a form feed\n# and a line separator \u2028 here\n" + SOURCE
    uri = open_doc(vscode, tmp_path / "ff.py", text)
    assert ranges(await published(vscode, uri, 1)) == expected_ranges(text)
    line = 11  # the first allocation: if the server split lines at \x0c or U+2028, the
    # comment would land two lines higher and silence nothing.
    end = lsp.Position(line, len(text.split("\n")[line]))
    change = lsp.TextEdit(range=lsp.Range(end, end), new_text="  # noqa: ALC001")
    send_edits(vscode, uri, 2, [change])
    text = apply(text, [change])
    assert text.split("\n")[line].endswith("output_tmp = torch.empty_like(output)  # noqa: ALC001")
    after = await published(vscode, uri, 2)
    assert len(after) == 1 and ranges(after) == expected_ranges(text)


async def test_bad_input_never_stops_the_server(vscode: LanguageClient, tmp_path):
    uri = open_doc(vscode, tmp_path / "bad.py", SOURCE)
    assert len(await published(vscode, uri, 1)) == 2
    nested = "x = " + "(" * 5000 + "1" + ")" * 5000 + "\n"
    for version, text in enumerate([SOURCE + nested, SOURCE + "\x00\n", SOURCE + "# \ud83d lone\n"], 2):
        change(vscode, uri, version, whole(text))
        assert await published(vscode, uri, version) == []  # cannot be parsed: nothing stale
    # A range past the end of the buffer means its end; changes to buffers never opened are ignored.
    far = lsp.Range(lsp.Position(10_000, 5), lsp.Position(10_000, 9))
    change(vscode, uri, 5, whole(SOURCE), lsp.TextDocumentContentChangePartial(range=far, text="# end\n"))
    change(vscode, (tmp_path / "unknown.py").as_uri(), 1, lsp.TextDocumentContentChangePartial(range=far, text="x"))
    unopened = lsp.TextDocumentIdentifier((tmp_path / "u2.py").as_uri())
    vscode.text_document_did_save(lsp.DidSaveTextDocumentParams(unopened))
    assert ranges(await published(vscode, uri, 5)) == expected_ranges(SOURCE + "# end\n")
    assert (await vscode.code_action_resolve_async(lsp.CodeAction(title="x", data="junk"))).edit is None
    assert [a.kind for a in await actions(vscode, uri, line=10_000)] == ["source.fixAll.alloc-lint"]


# --- code actions -----------------------------------------------------------------------


async def test_quick_fixes_are_the_fixes_of_check_and_clear_the_findings(vscode: LanguageClient, tmp_path):
    uri = open_doc(vscode, tmp_path / "q.py", SOURCE)
    first = (await published(vscode, uri, 1))[0]
    offered = await actions(vscode, uri, first)
    titles = [a.title for a in offered]
    assert titles[0].startswith("Fix ALC001 (unsafe): Allocate `output_tmp`")
    assert titles[1].startswith("Fix ALC001: Allocate two buffers")
    assert titles[2] == "Suppress with `# noqa: ALC001`"
    assert [a.is_preferred for a in offered] == [False, True, None, None]
    assert all(a.kind == lsp.CodeActionKind.QuickFix for a in offered[:3])
    assert [a.edit is None for a in offered] == [True, True, False, True]  # fixes' edits (LibCST) come on resolve
    assert offered[3].kind == "source.fixAll.alloc-lint" and len(offered) == 4

    expected = alloc_lint.check_source(SOURCE)
    attach_edits(SOURCE, expected)
    for action, fix in zip(offered[:2], expected[0].fixes):
        resolved = await vscode.code_action_resolve_async(action)
        edits = text_edits(resolved.edit, uri)
        assert resolved.edit.document_changes[0].text_document.version == 1
        # The same line edits as `alloc-lint check --format json` carries.
        assert [(e.range.start.line + 1, e.range.end.line + 1, e.new_text) for e in edits] == \
            [(e.start_line, e.end_line, e.content) for e in fix.edits]
    safe = apply(SOURCE, text_edits((await vscode.code_action_resolve_async(offered[1])).edit, uri))
    assert safe == alloc_lint.fix_source(SOURCE).text
    unsafe = apply(SOURCE, text_edits((await vscode.code_action_resolve_async(offered[0])).edit, uri))
    assert unsafe == alloc_lint.fix_source(SOURCE, unsafe_fixes=True).text

    preferred = await vscode.code_action_resolve_async(offered[1])
    send_edits(vscode, uri, 2, text_edits(preferred.edit, uri))
    assert await published(vscode, uri, 2) == []
    # An action resolved after its buffer changed carries no edit.
    assert (await vscode.code_action_resolve_async(offered[0])).edit is None


async def test_fix_all_applies_every_safe_fix(vscode: LanguageClient, tmp_path):
    text = SOURCE + "\n\n" + SOURCE.replace("merge_chunks", "merge_more").replace("import torch\n", "")
    uri = open_doc(vscode, tmp_path / "all.py", text)
    assert len(await published(vscode, uri, 1)) == 4
    assert await actions(vscode, uri, only=["quickfix"], line=0) == []
    (fix_all,) = await actions(vscode, uri, only=["source.fixAll"])
    assert fix_all.kind == "source.fixAll.alloc-lint"
    assert await actions(vscode, uri, only=["source"]) == [fix_all]
    edits = text_edits((await vscode.code_action_resolve_async(fix_all)).edit, uri)
    fixed = apply(text, edits)
    assert fixed == alloc_lint.fix_source(text).text != text
    send_edits(vscode, uri, 2, edits)
    assert await published(vscode, uri, 2) == []
    assert await actions(vscode, uri, only=["source.fixAll"]) == []  # nothing left to fix


async def test_noqa_action(vscode: LanguageClient, tmp_path):
    # A comment with quotes in it (the action must prove the line does not end in a string),
    # and a noqa list for another tool.
    text = SOURCE.replace("output_tmp = torch.empty_like(output)", "output_tmp = torch.empty_like(output)  # 'tmp'")
    text = text.replace("output_lse_tmp = torch.empty_like(output_lse)",
                        "output_lse_tmp = torch.empty_like(output_lse)  # noqa: E501")
    uri = open_doc(vscode, tmp_path / "n.py", text)
    found = await published(vscode, uri, 1)
    version = 1
    for diagnostic, line_after in zip(found, ["output_tmp = torch.empty_like(output)  # 'tmp'  # noqa: ALC001",
                                              "torch.empty_like(output_lse)  # noqa: E501, ALC001"]):
        (noqa,) = [a for a in await actions(vscode, uri, diagnostic) if a.title.startswith("Suppress")]
        edits = text_edits((await vscode.code_action_resolve_async(noqa)).edit, uri)
        text = apply(text, edits)
        assert text.splitlines()[diagnostic.range.start.line].endswith(line_after)
        version += 1
        send_edits(vscode, uri, version, edits)
        remaining = await published(vscode, uri, version)
        assert diagnostic.range.start.line not in [d.range.start.line for d in remaining]
    assert remaining == [] and alloc_lint.check_source(text) == []


async def test_noqa_action_leaves_strings_alone(vscode: LanguageClient, tmp_path):
    text = SOURCE.replace("output_tmp = torch.empty_like(output)",
                          'note = "# noqa: E501"; output_tmp = torch.empty_like(output)')
    uri = open_doc(vscode, tmp_path / "ns.py", text)
    first = (await published(vscode, uri, 1))[0]
    (noqa,) = [a for a in await actions(vscode, uri, first) if a.title.startswith("Suppress")]
    fixed = apply(text, text_edits(noqa.edit, uri))
    assert 'note = "# noqa: E501"; output_tmp = torch.empty_like(output)  # noqa: ALC001\n' in fixed
    assert [d.line for d in alloc_lint.check_source(fixed)] == [first.range.start.line + 2]


async def test_no_noqa_action_where_a_comment_cannot_go(vscode: LanguageClient, tmp_path):
    # After a backslash continuation, or inside a string that goes on past the line's end.
    text = SOURCE.replace("output_tmp = torch.empty_like(output)\n",
                          "output_tmp = torch.empty_like(output) \\\n    \n")
    text = text.replace("output_lse_tmp = torch.empty_like(output_lse)\n",
                        'output_lse_tmp = torch.empty_like(output_lse, device="""\n""")\n')
    assert len(alloc_lint.check_source(text)) == 2
    uri = open_doc(vscode, tmp_path / "bs.py", text)
    for diagnostic in await published(vscode, uri, 1):
        assert not [a.title for a in await actions(vscode, uri, diagnostic) if a.title.startswith("Suppress")]


async def test_actions_for_unknown_buffers_and_stale_requests(vscode: LanguageClient, tmp_path):
    assert await actions(vscode, (tmp_path / "never-opened.py").as_uri(), line=0) == []
    stale = lsp.CodeAction(title="x", data={"uri": (tmp_path / "gone.py").as_uri(), "version": 1, "action": "fixAll"})
    assert (await vscode.code_action_resolve_async(stale)).edit is None


# --- other clients: eager edits, UTF-32, save, configuration ----------------------------------


async def test_eager_edits_for_clients_that_cannot_resolve(emacs: LanguageClient, tmp_path):
    uri = open_doc(emacs, tmp_path / "e.py", NON_ASCII.replace("note = \"😀 σ\"; ", "# 😀\n            "))
    text = NON_ASCII.replace("note = \"😀 σ\"; ", "# 😀\n            ")
    found = await published(emacs, uri, 1)
    assert ranges(found) == expected_ranges(text, "utf-32")
    offered = await actions(emacs, uri, found[1])
    # No fix-all unless asked for by kind: without lazy edits it would cost a LibCST pass per request.
    assert [a.title.split(":")[0] for a in offered] == ["Fix ALC001 (unsafe)", "Fix ALC001", "Suppress with `# noqa"]
    (fix_all,) = await actions(emacs, uri, only=["source.fixAll.alloc-lint"])
    assert apply(text, text_edits(fix_all.edit, uri), "utf-32") == alloc_lint.fix_source(text).text
    assert all(a.edit is not None for a in offered)
    assert apply(text, text_edits(offered[1].edit, uri), "utf-32") == alloc_lint.fix_source(text).text


async def test_changes_wait_for_the_debounce_and_save_checks_at_once(emacs: LanguageClient, tmp_path):
    uri = open_doc(emacs, tmp_path / "s.py", "x = 1\n")
    assert await published(emacs, uri, 1) == []
    change(emacs, uri, 2, whole(SOURCE))
    await asyncio.sleep(0.3)  # the debounce is a minute here
    assert not [p for p in emacs.published if p.uri == uri and p.version == 2]
    emacs.text_document_did_save(lsp.DidSaveTextDocumentParams(lsp.TextDocumentIdentifier(uri)))
    assert ranges(await published(emacs, uri, 2)) == expected_ranges(SOURCE, "utf-32")


def libcst_loaded(client: LanguageClient) -> bool:
    with open(f"/proc/{client._server.pid}/maps", encoding="utf-8") as maps:
        return "libcst/native" in maps.read()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
async def test_no_libcst_until_a_fix_is_asked_for(neovim: LanguageClient, tmp_path):
    # Keep this the only test of the `neovim` server that resolves a fix.
    uri = open_doc(neovim, tmp_path / "lazy.py", SOURCE)
    first = (await published(neovim, uri, 1))[0]
    offered = await actions(neovim, uri, first)
    assert not libcst_loaded(neovim)  # checking and listing actions parse with `ast` only
    resolved = await neovim.code_action_resolve_async(next(a for a in offered if a.is_preferred))
    assert resolved.edit.changes[uri] and libcst_loaded(neovim)


async def test_configuration_per_file_and_errors_shown(neovim: LanguageClient, tmp_path):
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    (quiet / "pyproject.toml").write_text('[tool.alloc-lint]\nignore = ["ALC001"]\n')
    uri = open_doc(neovim, quiet / "sub" / "m.py", SOURCE)
    assert await published(neovim, uri, 1) == []
    # Excludes apply to open files as `--force-exclude` applies them; so do per-file-ignores.
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[tool.alloc-lint]\nextend-exclude = ["vendored"]\n'
                                            '[tool.alloc-lint.per-file-ignores]\n"legacy_*.py" = ["ALC001"]\n')
    for name, count in [("vendored/m.py", 0), ("legacy_m.py", 0), ("src/m.py", 2)]:
        uri = open_doc(neovim, project / name, SOURCE)
        assert len(await published(neovim, uri, 1)) == count, name

    broken = tmp_path / "broken"
    broken.mkdir()
    config = broken / "pyproject.toml"
    config.write_text('[tool.alloc-lint]\nextra-allocaters = ["x"]\n')
    uri = open_doc(neovim, broken / "m.py", SOURCE)
    assert await published(neovim, uri, 1) == []
    shown = [m for m in neovim.messages if str(config) in m.message]
    assert len(shown) == 1 and shown[0].type == lsp.MessageType.Error
    with pytest.raises(ConfigError) as raised:  # the error `alloc-lint check` prints, word for word
        for_file(broken / "m.py")
    assert "extra-allocaters" in str(raised.value) and str(raised.value) in shown[0].message
    change(neovim, uri, 2, whole(SOURCE + "\n"))
    assert await published(neovim, uri, 2) == []
    assert len([m for m in neovim.messages if str(config) in m.message]) == 1  # shown once, not per keystroke

    config.write_text('[tool.alloc-lint]\nextra-allocators = ["x"]\n')
    seen = len(neovim.published)
    neovim.workspace_did_change_watched_files(lsp.DidChangeWatchedFilesParams(
        [lsp.FileEvent(config.as_uri(), lsp.FileChangeType.Changed)]))
    deadline = time.monotonic() + TIMEOUT
    while not [p for p in neovim.published[seen:] if p.uri == uri] and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    (again,) = [p for p in neovim.published[seen:] if p.uri == uri]
    assert ranges(again.diagnostics) == expected_ranges(SOURCE + "\n", "utf-8")


async def test_server_without_the_extra_says_how_to_install_it():
    code = ("import sys; sys.modules['pygls'] = None; from alloc_lint.cli import main; "
            "sys.exit(main(['server']))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "alloc-lint: error: `alloc-lint server` needs pygls and lsprotocol: pip install 'alloc-lint[server]'"]
