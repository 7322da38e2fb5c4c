"""The language server: diagnostics from the editor's buffers, quick fixes,
`source.fixAll.alloc-lint`, and `# noqa` suppressions. Built on pygls.

Every check runs on one worker thread, so the event loop keeps reading the
editor's messages meanwhile. Changes are debounced; opening and saving check
at once. A check is the engine's `check_text` (the text prefilter first, then
`ast`); LibCST is only imported when a code action needs the edits of a fix.
"""
from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, lsp_method
from pygls.uris import from_fs_path, to_fs_path

from .. import __version__, engine
from ..config import Config, ConfigError, for_file
from ..diagnostics import Diagnostic, Edit
from ..lines import split_lines
from .text import UTF16, Buffer, apply_change

log = logging.getLogger(__name__)

SOURCE = "alloc-lint"
FIX_ALL = "source.fixAll.alloc-lint"
DEFAULT_DEBOUNCE_MS = 100


@dataclass
class Checked:
    """What one check of one version of a buffer found."""

    version: int | None
    text: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    config: Config | None = None
    config_error: str | None = None
    syntax_error: str | None = None
    internal_error: str | None = None
    filename: str = "<buffer>"
    noqa: dict = field(default_factory=dict)  # (code, line, column) -> the edits of its noqa action


@dataclass
class Document:
    uri: str
    text: str
    version: int | None
    epoch: int = 0  # counts configuration changes
    checked: tuple | None = None  # (state, Checked): the last check
    job: tuple | None = None  # (state, future): the check under way
    pending: asyncio.Task | None = None  # the debounced check-and-publish

    @property
    def state(self) -> tuple:
        """What a check depends on; the text by identity (every change makes a new one)."""
        return self.version, id(self.text), self.epoch

    @property
    def path(self) -> str | None:
        return to_fs_path(self.uri) if self.uri.startswith("file:") else None


class Protocol(LanguageServerProtocol):
    """pygls keeps its own copy of each buffer, split by str.splitlines (which
    also breaks at form feeds and U+2028, so its incremental edits would land on
    the wrong line of such files). The server keeps the buffers instead."""

    @lsp_method(lsp.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params):
        yield self.fm.features[lsp.TEXT_DOCUMENT_DID_OPEN], (params,), None

    @lsp_method(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params):
        yield self.fm.features[lsp.TEXT_DOCUMENT_DID_CHANGE], (params,), None

    @lsp_method(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params):
        yield self.fm.features[lsp.TEXT_DOCUMENT_DID_CLOSE], (params,), None


class AllocLintServer(LanguageServer):
    def __init__(self):
        super().__init__("alloc-lint", __version__, protocol_cls=Protocol,
                         text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental)
        self.documents: dict[str, Document] = {}
        self.debounce = DEFAULT_DEBOUNCE_MS / 1000
        self.root: str | None = None
        self.resolve_edits = False  # the client resolves code actions' edits lazily
        self.versioned_edits = False  # the client takes documentChanges
        self.shown_config_errors: set[str] = set()
        # One worker: checks of one buffer never race, and a check never runs
        # beside another one on the 2 cores that editors and linters share.
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alloc-lint-check")

    @property
    def encoding(self) -> str:
        try:
            encoding = self.workspace.position_encoding or UTF16
        except RuntimeError:  # not initialized
            return UTF16
        return str(getattr(encoding, "value", encoding))  # an enum member or its string

    async def in_worker(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self.worker, function, *args)

    def log(self, message: str, kind: lsp.MessageType = lsp.MessageType.Log) -> None:
        self.window_log_message(lsp.LogMessageParams(type=kind, message=message))

    # --- checking ----------------------------------------------------------------------

    def config_for(self, path: str | None) -> Config:
        """The configuration that governs one file, as the CLI resolves it, read
        afresh (pyproject.toml may have changed); a buffer without a file is
        governed as a file in the workspace root would be."""
        return for_file(path or os.path.join(self.root or os.getcwd(), "untitled.py"))

    def check(self, doc: Document, version: int | None, text: str) -> Checked | None:
        """Runs on the worker thread. None when the buffer changed before the
        check could start (a newer check is queued); never raises."""
        if doc.version != version or doc.text is not text:
            return None
        try:
            try:
                config = self.config_for(doc.path)
            except ConfigError as exc:
                return Checked(version, text, config_error=str(exc))
            filename = doc.path or "<buffer>"
            if doc.path and config.is_excluded(doc.path, whole_path=True):
                return Checked(version, text, config=config, filename=filename)  # as --force-exclude
            try:
                found = engine.check_text(text, filename, config)
            except engine.SourceError as exc:
                return Checked(version, text, config=config, syntax_error=str(exc))
            return Checked(version, text, found, config=config, filename=filename)
        except Exception as exc:  # a bug in a rule: say so, show nothing, keep serving
            log.exception("check failed")
            return Checked(version, text, internal_error=f"{type(exc).__name__}: {exc}")

    async def checked(self, doc: Document) -> Checked | None:
        """The check of the buffer as it is now (None if it changes meanwhile).
        A check already done or under way for this state is shared."""
        state = doc.state
        if doc.checked is not None and doc.checked[0] == state:
            return doc.checked[1]
        if doc.job is None or doc.job[0] != state:
            future = asyncio.get_running_loop().run_in_executor(self.worker, self.check, doc, doc.version, doc.text)
            doc.job = (state, future)
        # Shielded: a cancelled waiter (a newer keystroke) leaves the check to other waiters.
        result = await asyncio.shield(doc.job[1])
        if result is None or doc.state != state:
            return None
        doc.checked = (state, result)
        return result

    def schedule(self, doc: Document, delay: float) -> None:
        if doc.pending is not None:
            doc.pending.cancel()
        doc.pending = asyncio.ensure_future(self._check_and_publish(doc, delay))

    async def _check_and_publish(self, doc: Document, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        result = await self.checked(doc)
        if result is None or self.documents.get(doc.uri) is not doc:
            return
        try:
            self.publish(doc, result)
        except Exception as exc:  # never leave stale findings on screen
            log.exception("publishing failed")
            self.log(f"alloc-lint: internal error while publishing {doc.uri}: {exc!r}", lsp.MessageType.Error)
            self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(
                uri=doc.uri, version=doc.version, diagnostics=[]))

    def publish(self, doc: Document, result: Checked) -> None:
        if result.config_error:
            if result.config_error not in self.shown_config_errors:
                self.shown_config_errors.add(result.config_error)
                self.window_show_message(lsp.ShowMessageParams(
                    type=lsp.MessageType.Error,
                    message=f"alloc-lint: {result.config_error} (no findings are shown until it is fixed)"))
        elif result.config and result.config.source:
            # Fixed now: show it again if it breaks again.
            self.shown_config_errors = {e for e in self.shown_config_errors
                                        if not e.startswith(result.config.source + ":")}
        if result.internal_error:
            self.log(f"alloc-lint: internal error while checking {doc.uri}: {result.internal_error}",
                     lsp.MessageType.Error)
        if result.syntax_error:
            self.log(f"alloc-lint: {doc.uri}: {result.syntax_error}; findings cleared until it parses")
        buffer = Buffer(result.text, self.encoding)
        self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(
            uri=doc.uri, version=doc.version,
            diagnostics=[self.to_lsp(d, buffer) for d in result.diagnostics]))

    def to_lsp(self, d: Diagnostic, buffer: Buffer) -> lsp.Diagnostic:
        start = buffer.column_position(d.line, d.column - 1)
        end = buffer.column_position(d.end_line, d.end_column - 1)
        href = rule_page(d.code)
        return lsp.Diagnostic(
            range=lsp.Range(lsp.Position(*start), lsp.Position(*end)),
            message=d.message,
            severity=lsp.DiagnosticSeverity.Warning,
            code=d.code,
            code_description=lsp.CodeDescription(href=href) if href else None,
            source=SOURCE,
        )

    # --- code actions ------------------------------------------------------------------

    async def code_actions(self, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
        doc = self.documents.get(params.text_document.uri)
        if doc is None:
            return []
        result = await self.checked(doc)
        if result is None:
            return []  # the buffer changed while it was checked: the editor asks again
        only = params.context.only
        buffer = Buffer(result.text, self.encoding)
        actions: list[lsp.CodeAction] = []
        if wanted(lsp.CodeActionKind.QuickFix, only):
            # The findings under the cursor, and those the editor sent along (it
            # may ask for a whole line while the finding covers only the call).
            sent = {(c.code, key(c.range.start), key(c.range.end)) for c in params.context.diagnostics
                    if c.source == SOURCE}
            for d in result.diagnostics:
                lsp_diag = self.to_lsp(d, buffer)
                if not (overlaps(lsp_diag.range, params.range)
                        or (d.code, key(lsp_diag.range.start), key(lsp_diag.range.end)) in sent):
                    continue
                first_safe = d.fix_for(False)
                for index, fix in enumerate(d.fixes):
                    label = "" if fix.applicability == "safe" else " (unsafe)"
                    actions.append(lsp.CodeAction(
                        title=f"Fix {d.code}{label}: {fix.message}",
                        kind=lsp.CodeActionKind.QuickFix, diagnostics=[lsp_diag],
                        is_preferred=fix is first_safe,
                        data={"uri": doc.uri, "version": doc.version, "action": "fix",
                              "code": d.code, "line": d.line, "column": d.column, "fix": index}))
                # Worked out now (a tokenize pass, no LibCST), so that a line that
                # cannot take a comment offers no action at all.
                noqa = await self.in_worker(noqa_edits, result, d)
                if noqa:
                    actions.append(lsp.CodeAction(
                        title=f"Suppress with `# noqa: {d.code}`",
                        kind=lsp.CodeActionKind.QuickFix, diagnostics=[lsp_diag],
                        edit=self.workspace_edit(doc, result.text, noqa)))
        # The fix-all is offered when asked for by kind (on save, the source action
        # menu), or in every list where the client works out edits on demand: for
        # a client that cannot, it would cost a LibCST pass at every cursor move.
        asked = wanted(FIX_ALL, only) if only else self.resolve_edits
        if asked and any(d.fix_for(False) for d in result.diagnostics):
            actions.append(lsp.CodeAction(
                title="alloc-lint: apply every safe fix", kind=FIX_ALL,
                data={"uri": doc.uri, "version": doc.version, "action": "fixAll"}))
        if not self.resolve_edits:
            resolved = []
            for action in actions:
                if action.edit is None:
                    action = await self.resolve(action)
                if action.edit is not None:  # an action that cannot be carried out is not offered
                    resolved.append(action)
            actions = resolved
        return actions

    async def resolve(self, action: lsp.CodeAction) -> lsp.CodeAction:
        """Fill in a code action's edit; none when its buffer has changed since."""
        data = action.data if isinstance(action.data, dict) else {}
        doc = self.documents.get(data.get("uri", ""))
        if doc is None or doc.version != data.get("version"):
            return action
        result = await self.checked(doc)
        if result is None:
            return action
        try:
            edits = await self.in_worker(self.edits_for, result, data)
        except Exception as exc:  # a bug in the fixer: no edit, and say so
            log.exception("code action failed")
            self.log(f"alloc-lint: could not work out {action.title!r}: {exc!r}", lsp.MessageType.Error)
            return action
        if edits is not None and result.text is doc.text:
            action.edit = self.workspace_edit(doc, result.text, edits)
        return action

    def edits_for(self, result: Checked, data: dict) -> list[Edit] | None:
        """Runs on the worker thread: the line edits of one action."""
        kind = data.get("action")
        if kind == "fixAll":
            return fix_all_edits(result)
        d = next((d for d in result.diagnostics if (d.code, d.line, d.column)
                  == (data.get("code"), data.get("line"), data.get("column"))), None)
        if d is None:
            return None
        index = data.get("fix")
        if not isinstance(index, int) or not 0 <= index < len(d.fixes):
            return None
        return fix_edits(result.text, d, index)

    def workspace_edit(self, doc: Document, text: str, edits: list[Edit]) -> lsp.WorkspaceEdit:
        buffer = Buffer(text, self.encoding)
        text_edits = []
        for e in edits:
            start = buffer.position(buffer.line_start(e.start_line))
            end = buffer.position(buffer.line_start(e.end_line))
            text_edits.append(lsp.TextEdit(range=lsp.Range(lsp.Position(*start), lsp.Position(*end)),
                                           new_text=e.content))
        if self.versioned_edits:
            return lsp.WorkspaceEdit(document_changes=[lsp.TextDocumentEdit(
                text_document=lsp.OptionalVersionedTextDocumentIdentifier(uri=doc.uri, version=doc.version),
                edits=text_edits)])
        return lsp.WorkspaceEdit(changes={doc.uri: text_edits})


# --- what the code actions change ------------------------------------------------------


def fix_edits(text: str, d: Diagnostic, index: int) -> list[Edit] | None:
    """The edits of one fix: the same as `alloc-lint check --format json` carries.
    Kept on the fix: the finding belongs to this version of the buffer."""
    from ..edits import FixError
    from ..edits import fix_edits as edits_of

    fix = d.fixes[index]
    if fix.edits is None:
        try:
            fix.edits = edits_of(text, fix.operations)
        except FixError as exc:
            log.warning("fix not offered: %s", exc)
            return None
    return fix.edits or None


def fix_all_edits(result: Checked) -> list[Edit] | None:
    """The edits of `alloc-lint fix` (safe fixes only) on this buffer."""
    from ..api import fix_source
    from ..edits import line_edits

    fixed = fix_source(result.text, result.filename, result.config, unsafe_fixes=False)
    return line_edits(result.text, fixed.text) if fixed.changed else None


def noqa_edits(result: Checked, d: Diagnostic) -> list[Edit] | None:
    """The line edit that `alloc-lint check --add-noqa` makes for this finding:
    `  # noqa: CODE` appended, or the code added to the line's `# noqa:` list.
    None where a comment cannot go (the line ends inside a string, or with a
    backslash). Kept per finding: the light bulb asks again and again."""
    from ..noqa import add_noqa

    key = (d.code, d.line, d.column)
    if key not in result.noqa:
        try:
            new, added, _ = add_noqa(result.text, [d])
        except Exception:  # a bug there costs the action, not the light bulb
            log.exception("noqa action failed")
            new, added = result.text, 0
        line = split_lines(new, keepends=True)[d.line - 1] if added else None
        result.noqa[key] = [Edit(d.line, d.line + 1, line)] if line is not None else None
    return result.noqa[key]


# --- helpers ----------------------------------------------------------------------------


def wanted(kind: str, only: list[str] | None) -> bool:
    """Whether a requested `only` list takes actions of `kind` (kinds nest by dots)."""
    if not only:
        return True
    return any(kind == k or kind.startswith(f"{k}.") for k in only)


def key(position: lsp.Position) -> tuple[int, int]:
    return position.line, position.character


def overlaps(a: lsp.Range, b: lsp.Range) -> bool:
    return key(a.start) <= key(b.end) and key(b.start) <= key(a.end)


_RULE_PAGES: dict[str, str | None] = {}


def rule_page(code: str) -> str | None:
    """A file URI of the rule's page: the repository's `rules/CODE.md` when
    running from a checkout, else a copy written once to the user's cache."""
    if code in _RULE_PAGES:
        return _RULE_PAGES[code]
    from ..docs import page
    from ..rules import rule_by_code

    rule = rule_by_code(code)
    uri = None
    if rule is not None:
        text = page(rule)
        checkout = Path(__file__).resolve().parents[2] / "rules" / f"{code}.md"
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "alloc-lint" / "rules" / __version__
        try:
            if checkout.is_file() and checkout.read_text(encoding="utf-8") == text:
                uri = from_fs_path(str(checkout))
            else:
                path = cache / f"{code}.md"
                if not path.is_file() or path.read_text(encoding="utf-8") != text:
                    cache.mkdir(parents=True, exist_ok=True)
                    path.write_text(text, encoding="utf-8")
                uri = from_fs_path(str(path))
        except OSError:
            uri = None
    _RULE_PAGES[code] = uri
    return uri


# --- the server's handlers ------------------------------------------------------------


def make_server() -> AllocLintServer:
    server = AllocLintServer()

    @server.feature(lsp.INITIALIZE)
    def initialize(ls: AllocLintServer, params: lsp.InitializeParams):
        options = params.initialization_options if isinstance(params.initialization_options, dict) else {}
        debounce = options.get("debounce")
        if isinstance(debounce, (int, float)) and not isinstance(debounce, bool) and debounce >= 0:
            ls.debounce = debounce / 1000
        if params.workspace_folders:
            ls.root = to_fs_path(params.workspace_folders[0].uri)
        elif params.root_uri:
            ls.root = to_fs_path(params.root_uri)
        elif params.root_path:
            ls.root = params.root_path
        caps = params.capabilities
        code_action = caps.text_document.code_action if caps.text_document else None
        resolve = code_action.resolve_support if code_action else None
        ls.resolve_edits = bool(resolve and "edit" in resolve.properties)
        edit_caps = caps.workspace.workspace_edit if caps.workspace else None
        ls.versioned_edits = bool(edit_caps and edit_caps.document_changes)

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: AllocLintServer, params: lsp.DidOpenTextDocumentParams):
        item = params.text_document
        old = ls.documents.pop(item.uri, None)
        if old is not None and old.pending is not None:
            old.pending.cancel()
        # Clients set up for every file type send them all: check Python only.
        if item.language_id != "python" and not item.uri.endswith((".py", ".pyi")):
            return
        doc = Document(item.uri, item.text, item.version)
        ls.documents[item.uri] = doc
        ls.schedule(doc, 0)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: AllocLintServer, params: lsp.DidChangeTextDocumentParams):
        doc = ls.documents.get(params.text_document.uri)
        if doc is None:
            return
        for change in params.content_changes:
            if isinstance(change, lsp.TextDocumentContentChangePartial):
                r = change.range
                doc.text = apply_change(doc.text, (r.start.line, r.start.character),
                                        (r.end.line, r.end.character), change.text, ls.encoding)
            else:
                doc.text = change.text
        doc.version = params.text_document.version
        ls.schedule(doc, ls.debounce)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: AllocLintServer, params: lsp.DidSaveTextDocumentParams):
        doc = ls.documents.get(params.text_document.uri)
        if doc is not None:
            doc.epoch += 1  # the configuration may have changed on disk too
            ls.schedule(doc, 0)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: AllocLintServer, params: lsp.DidCloseTextDocumentParams):
        doc = ls.documents.pop(params.text_document.uri, None)
        if doc is not None and doc.pending is not None:
            doc.pending.cancel()
        ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=params.text_document.uri,
                                                                          diagnostics=[]))

    @server.feature(lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(ls: AllocLintServer, params: lsp.DidChangeWatchedFilesParams):
        if any(c.uri.endswith("pyproject.toml") for c in params.changes):
            for doc in ls.documents.values():
                doc.epoch += 1
                ls.schedule(doc, 0)

    @server.feature(lsp.INITIALIZED)
    async def initialized(ls: AllocLintServer, params: lsp.InitializedParams):
        caps = ls.client_capabilities.workspace
        watch = caps.did_change_watched_files if caps else None
        if watch and watch.dynamic_registration:
            try:
                await ls.client_register_capability_async(lsp.RegistrationParams(registrations=[
                    lsp.Registration(id="alloc-lint-config", method=lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                                     register_options=lsp.DidChangeWatchedFilesRegistrationOptions(
                                         watchers=[lsp.FileSystemWatcher(glob_pattern="**/pyproject.toml")]))]))
            except Exception as exc:  # the client said no: configuration is still read on every check
                ls.log(f"alloc-lint: could not watch pyproject.toml files: {exc}")

    @server.feature(lsp.TEXT_DOCUMENT_CODE_ACTION, lsp.CodeActionOptions(
        code_action_kinds=[lsp.CodeActionKind.QuickFix, FIX_ALL], resolve_provider=True))
    async def code_action(ls: AllocLintServer, params: lsp.CodeActionParams):
        return await ls.code_actions(params)

    @server.feature(lsp.CODE_ACTION_RESOLVE)
    async def code_action_resolve(ls: AllocLintServer, action: lsp.CodeAction):
        return await ls.resolve(action)

    @server.feature(lsp.SHUTDOWN)
    def shutdown(ls: AllocLintServer, params: Any):
        for doc in ls.documents.values():
            if doc.pending is not None:
                doc.pending.cancel()
        ls.worker.shutdown(wait=False, cancel_futures=True)

    return server


def serve() -> None:
    logging.basicConfig(level=logging.WARNING, format="alloc-lint server: %(message)s")
    make_server().start_io()
