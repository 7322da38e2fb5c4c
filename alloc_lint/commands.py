"""`alloc-lint check` and `alloc-lint fix`: both find work through the engine
(per-file configuration, results cache, worker processes), then report or
rewrite."""
from __future__ import annotations

import difflib
import gc
import json
import os
import sys
import time

from . import engine
from .config import Resolver
from .diagnostics import FileError
from .formats import FORMATS, NEEDS_EDITS
from .formats.text import finding_line, held_back_lines
from .lines import split_lines
from .output import Output, plural

# Fixing costs a LibCST parse per file: worth other processes from this many files.
MIN_FIXES_FOR_WORKERS = 4


class Progress:
    """`checked N/M files` on a terminal, for runs long enough to want it;
    never in pipes or CI logs."""

    def __init__(self):
        self.enabled = sys.stderr.isatty() and not os.environ.get("CI")
        self.started = time.monotonic()
        self.shown = False
        self.last = 0

    def __call__(self, done: int, total: int) -> None:
        # `done` may jump (workers report files in batches): show every 50 crossed
        if self.enabled and time.monotonic() - self.started > 0.5 and (done // 50 > self.last // 50 or done == total):
            sys.stderr.write(f"\ralloc-lint: checked {done}/{total} files")
            self.shown = True
        self.last = done

    def finish(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")


def _print_stats(stats, diagnostics: int, errors: int) -> None:
    print(json.dumps({"files": stats.files, "text_kept": stats.text_kept, "ast_kept": stats.ast_kept,
                      "libcst_parsed": stats.libcst_parsed, "cached": stats.cached,
                      "diagnostics": diagnostics, "errors": errors}), file=sys.stderr)


def _read_stdin(args, resolver: Resolver):
    """(filename, config, source) for `-`; config None when --force-exclude excludes it."""
    filename = args.stdin_filename or "-"
    config = resolver.for_file(args.stdin_filename or os.path.join(os.getcwd(), "-"))
    if args.force_exclude and args.stdin_filename and config.is_excluded(filename, whole_path=True):
        return filename, None, None
    data = sys.stdin.buffer.read()
    return filename, config, data


def _scan(args, resolver: Resolver, caches, jobs: int, stdin: bool):
    """The report of a run, and the texts already in memory (standard input)."""
    if stdin:
        report, texts = engine.Report(), {}
        filename, config, data = _read_stdin(args, resolver)
        if config is None:
            return report, texts
        report.stats.files = 1
        report.checked.append(filename)
        try:
            source = engine.decode(data)
            texts[filename] = source
            report.diagnostics = engine.check_text(source.text, filename, config, prefilter=not args.no_prefilter,
                                                   stats=report.stats)
        except engine.SourceError as exc:
            report.errors.append(FileError(filename, str(exc), line=exc.line, column=exc.column))
        return report, texts
    progress = Progress()
    report = engine.check_paths(args.paths or ["."], resolver, prefilter=not args.no_prefilter, jobs=jobs,
                                cache=caches, progress=progress, force_exclude=args.force_exclude,
                                respect_gitignore=args.respect_gitignore)
    progress.finish()
    # What the run built (the report, the cache's entries) lives until the
    # process exits: out of the collector's sight, a first collection would
    # walk it all for nothing.
    gc.freeze()
    return report, {}


def _print_errors(errors) -> None:
    for error in errors:
        print(error, file=sys.stderr)


def _statistics(diagnostics, unsafe_fixes: bool, fmt: str) -> str:
    counts = {}
    for d in diagnostics:
        entry = counts.setdefault(d.code, {"code": d.code, "name": d.name, "count": 0, "fixable": 0})
        entry["count"] += 1
        entry["fixable"] += d.fix_for(unsafe_fixes) is not None
    rows = sorted(counts.values(), key=lambda e: (-e["count"], e["code"]))
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"

    def mark(e):  # as Ruff: [*] every one fixable, [-] some, [ ] none
        return "[*]" if e["fixable"] == e["count"] else "[-]" if e["fixable"] else "[ ]"

    return "".join(f"{e['count']:>5}\t{e['code']}\t{mark(e)} {e['name']}\n" for e in rows)


def run_check(args, resolver: Resolver, out: Output, caches, jobs: int, stdin: bool) -> int:
    report, texts = _scan(args, resolver, caches, jobs, stdin)
    if args.add_noqa:
        return _add_noqa(report, texts)
    if args.format in NEEDS_EDITS and not args.statistics:
        # Fixes are operations (data, cached with the results): turning them
        # into text edits needs only each fixable file's text.
        from .api import attach_edits

        fixable: dict[str, list] = {}
        for d in report.diagnostics:
            if d.fixes:
                fixable.setdefault(d.filename, []).append(d)
        for filename, diagnostics in fixable.items():
            try:
                source = texts.get(filename) or engine.read_source(filename)
            except engine.SourceError:
                continue  # gone since it was checked: reported without edits
            attach_edits(source.text, diagnostics, resolver.for_file(filename).line_length)
    if args.statistics:
        out.write(_statistics(report.diagnostics, args.unsafe_fixes, "json" if args.format == "json" else "text"))
    else:
        out.write(FORMATS[args.format].render(report.diagnostics, report.errors, args.unsafe_fixes,
                                              colour=out.colour, show_fixes=args.show_fixes, quiet=args.quiet,
                                              files=report.stats.files))
    if args.format != "github" or args.statistics:
        _print_errors(report.errors)
    if args.stats:
        _print_stats(report.stats, len(report.diagnostics), len(report.errors))
    if any(not e.warning for e in report.errors):
        return 2
    return 1 if report.diagnostics and not args.exit_zero else 0


def _add_noqa(report, texts) -> int:
    from .api import FileChanged
    from .noqa import add_noqa_to_file

    _print_errors(report.errors)
    by_file: dict[str, list] = {}
    for d in report.diagnostics:
        by_file.setdefault(d.filename, []).append(d)
    added, failed = 0, any(not e.warning for e in report.errors)
    for filename, diagnostics in by_file.items():
        if filename in texts:  # standard input: print the result
            from .noqa import add_noqa

            text, n, problems = add_noqa(texts[filename].text, diagnostics)
            sys.stdout.write(text)
        else:
            try:
                n, problems = add_noqa_to_file(filename, diagnostics)
            except (OSError, FileChanged, engine.SourceError) as exc:
                print(f"{filename}: error: cannot add noqa: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
                failed = True
                continue
        added += n
        for problem in problems:
            print(problem, file=sys.stderr)
    for filename, source in texts.items():
        if filename not in by_file:  # standard input without findings: through unchanged
            sys.stdout.write(source.text)
    print(f"Added {plural(added, 'noqa directive')}.", file=sys.stderr)
    return 2 if failed else 0


# --- fix ------------------------------------------------------------------------------


def _fix_one(item):
    """Fix one file (here or in a worker): (path, original bytes, source, FixResult or error)."""
    from .api import fix_source  # the fix engine: loaded only when there is something to fix

    path, config, unsafe_fixes = item
    try:
        original = engine.read_bytes(path)
        source = engine.decode(original)
        result = fix_source(source.text, path, config, unsafe_fixes=unsafe_fixes)
    except engine.SourceError as exc:
        return path, None, None, FileError(path, str(exc), line=exc.line, column=exc.column)
    return path, original, source, result


def _fixed(items, jobs: int):
    if jobs > 1 and len(items) >= MIN_FIXES_FOR_WORKERS:
        import multiprocessing

        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(min(jobs, len(items))) as pool:
            yield from pool.imap(_fix_one, items)
    else:
        for item in items:
            yield _fix_one(item)


def run_fix(args, resolver: Resolver, out: Output, caches, jobs: int, stdin: bool) -> int:
    from .api import FileChanged, fix_source, write_atomically

    report, texts = _scan(args, resolver, caches, jobs, stdin)
    _print_errors(report.errors)
    failed = any(not e.warning for e in report.errors)
    targets = sorted({d.filename for d in report.diagnostics if d.fix_for(args.unsafe_fixes)})
    remaining = [d for d in report.diagnostics if d.filename not in targets]
    fixed = changed_files = 0
    fixed_by_file: dict[str, list] = {}
    if stdin and targets:
        [filename] = targets
        source = texts[filename]
        result = fix_source(source.text, filename, resolver.for_file(os.path.join(os.getcwd(), "-"))
                            if filename == "-" else resolver.for_file(filename), unsafe_fixes=args.unsafe_fixes)
        results = [(filename, None, source, result)]
    else:
        results = _fixed([(p, resolver.for_file(p), args.unsafe_fixes) for p in targets], jobs)
    for path, original, source, result in results:
        if isinstance(result, FileError):
            print(result, file=sys.stderr)
            failed = True
            continue
        if result.error:
            print(f"{path}: warning: fixes not applied: {result.error}", file=sys.stderr)
        remaining.extend(result.remaining)
        if not result.changed:
            continue
        fixed += result.fixed
        changed_files += 1
        fixed_by_file[path] = [d for d in report.diagnostics if d.filename == path and d.fix_for(args.unsafe_fixes)]
        if args.diff:
            out.write("".join(difflib.unified_diff(
                split_lines(source.text, keepends=True), split_lines(result.text, keepends=True),
                fromfile=f"a/{path}", tofile=f"b/{path}")))
        elif stdin:
            out.write(result.text)
            continue
        else:
            try:
                write_atomically(path, engine.encode(source, result.text), expected_old=original)
            except (FileChanged, OSError) as exc:
                message = str(exc) if isinstance(exc, FileChanged) else f"cannot write: {exc.strerror or exc}"
                print(f"{path}: error: {message}", file=sys.stderr)
                failed = True
    if stdin and not args.diff and not fixed and texts:
        out.write(next(iter(texts.values())).text)  # unchanged source through, as formatters do
    remaining.sort(key=lambda d: d.sort_key())
    if args.statistics:
        sys.stderr.write(_statistics(remaining, args.unsafe_fixes, "text"))
    else:
        for d in remaining:
            print(finding_line(d), file=sys.stderr)
    if args.show_fixes:
        for path, diagnostics in sorted(fixed_by_file.items()):
            counts = {}
            for d in diagnostics:
                counts[(d.code, d.name)] = counts.get((d.code, d.name), 0) + 1
            for (code, name), n in sorted(counts.items()):
                print(f"Fixed {path}: {n} × {code} ({name})", file=sys.stderr)
    if not args.quiet:
        if not args.unsafe_fixes:
            held = [d for path in fixed_by_file for d in fixed_by_file[path]]
            for line in held_back_lines(held, verb="took"):
                print(line, file=sys.stderr)
        verb = "Would fix" if args.diff else "Fixed"
        summary = f"{verb} {plural(fixed, 'finding')} in {plural(changed_files, 'file')}"
        if remaining:
            summary += f"; {len(remaining)} remaining without a fix"
        print(summary + ".", file=sys.stderr)
    if args.stats:
        _print_stats(report.stats, len(remaining), len(report.errors))
    if failed:
        return 2
    if args.exit_non_zero_on_fix and fixed:
        return 1
    if args.exit_zero:
        return 0
    return 1 if remaining or (args.diff and fixed) else 0
