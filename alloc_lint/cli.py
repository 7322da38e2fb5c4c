"""`alloc-lint check | fix | rules | explain`: a thin layer over the engine.

Exit codes: 0 nothing to report; 1 findings (for `fix`: findings remain, or
with --diff changes would be made); 2 usage error, bad configuration, or a
file that could not be read or parsed (the other files are still checked).
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import time

from . import __version__, engine
from .api import FileChanged, attach_edits, fix_source, write_atomically
from .cache import DEFAULT_DIR as DEFAULT_CACHE_DIR
from .cache import Cache
from .config import Config, ConfigError, discover, load
from .formats import FORMATS, NEEDS_EDITS
from .lines import split_lines
from .rules import ALL_RULES, rule_by_code


def _codes(value: str) -> tuple[str, ...]:
    return tuple(c.strip().upper() for c in value.split(",") if c.strip())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alloc-lint",
        description="Find (and fix) buffers allocated on every loop iteration only to be merged into "
                    "and rebound, in PyTorch code.")
    parser.add_argument("--version", action="version", version=f"alloc-lint {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(sub):
        sub.add_argument("paths", nargs="*", default=["."], metavar="PATH",
                         help="files or directories (default: .)")
        sub.add_argument("--config", metavar="FILE", help="a pyproject.toml or TOML file with [tool.alloc-lint]")
        sub.add_argument("--select", type=_codes, metavar="CODES", help="comma-separated codes or prefixes")
        sub.add_argument("--ignore", type=_codes, metavar="CODES", help="comma-separated codes or prefixes")
        sub.add_argument("--unsafe-fixes", action="store_true", help="also use fixes marked unsafe")
        sub.add_argument("--no-prefilter", action="store_true", help=argparse.SUPPRESS)
        sub.add_argument("--stats", action="store_true", help="print file counts per stage to stderr (JSON)")

    check = commands.add_parser("check", help="report findings")
    common(check)
    check.add_argument("--format", choices=sorted(FORMATS), default="text")
    check.add_argument("--exit-zero", action="store_true", help="exit 0 even when there are findings")
    check.add_argument("--no-cache", action="store_true", help="neither read nor write the results cache")
    check.add_argument("--cache-dir", metavar="DIR",
                       help=f"where the cache lives (default: $ALLOC_LINT_CACHE_DIR or {DEFAULT_CACHE_DIR})")
    check.add_argument("-j", "--jobs", type=int, metavar="N",
                       help="worker processes (default: all cores; 1 inside pre-commit, which runs hooks in parallel)")

    fix = commands.add_parser("fix", help="rewrite files in place")
    common(fix)
    fix.add_argument("--diff", action="store_true", help="print a unified diff and write nothing")

    rules = commands.add_parser("rules", help="list the rules")
    rules.add_argument("--format", choices=["text", "json"], default="text")
    explain = commands.add_parser("explain", help="print a rule's documentation")
    explain.add_argument("rule", metavar="CODE")
    commands.add_parser("server", help="run the language server (LSP over stdio; needs the `server` extra)")
    return parser


def _config(args) -> Config:
    config = load(args.config) if args.config else discover(".")
    if args.select:
        config.select = args.select
    if args.ignore:
        config.ignore = args.ignore
    return config


def _print_errors(errors) -> None:
    for error in errors:
        print(error, file=sys.stderr)


def _print_stats(stats, diagnostics: int, errors: int) -> None:
    print(json.dumps({"files": stats.files, "text_kept": stats.text_kept, "ast_kept": stats.ast_kept,
                      "libcst_parsed": stats.libcst_parsed, "cached": stats.cached,
                      "diagnostics": diagnostics, "errors": errors}), file=sys.stderr)


def _jobs(args) -> int:
    if args.jobs is not None:
        return max(1, args.jobs)
    if os.environ.get("PRE_COMMIT"):
        return 1  # pre-commit already runs one hook process per core
    return os.cpu_count() or 1


class Progress:
    """`checked N/M files` on a terminal, for runs long enough to want it;
    never in pipes or CI logs."""

    def __init__(self):
        self.enabled = sys.stderr.isatty() and not os.environ.get("CI")
        self.started = time.monotonic()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if self.enabled and time.monotonic() - self.started > 0.5 and (done % 50 == 0 or done == total):
            sys.stderr.write(f"\ralloc-lint: checked {done}/{total} files")
            self.shown = True

    def finish(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")


def run_check(args, config: Config) -> int:
    cache = None
    if not args.no_cache:
        cache = Cache(args.cache_dir or os.environ.get("ALLOC_LINT_CACHE_DIR") or DEFAULT_CACHE_DIR,
                      config.fingerprint())
    progress = Progress()
    report = engine.check_paths(args.paths, config, prefilter=not args.no_prefilter, jobs=_jobs(args),
                                cache=cache, progress=progress)
    progress.finish()
    if args.format in NEEDS_EDITS:
        # Fix plans are not cached: re-check the few files that have fixes to turn them into edits.
        fixable = sorted({d.filename for d in report.diagnostics if d.fixes})
        if fixable:
            kept = [d for d in report.diagnostics if d.filename not in fixable]
            for filename in fixable:
                text = engine.read_source(filename).text
                fresh = engine.check_text(text, filename, config, prefilter=False)
                attach_edits(text, fresh)
                kept.extend(fresh)
                report.stats.libcst_parsed += 1
            report.diagnostics = sorted(kept, key=lambda d: d.sort_key())
    sys.stdout.write(FORMATS[args.format].render(report.diagnostics, report.errors, args.unsafe_fixes))
    if args.format != "github":
        _print_errors(report.errors)
    if args.stats:
        _print_stats(report.stats, len(report.diagnostics), len(report.errors))
    if any(not e.warning for e in report.errors):
        return 2
    return 1 if report.diagnostics and not args.exit_zero else 0


def run_fix(args, config: Config) -> int:
    fixed = held_back = remaining = changed_files = 0
    failed = False
    unfixable = []
    stats = engine.Stats()
    for path, error in engine.iter_python_files(args.paths, config):
        if error:
            print(error, file=sys.stderr)
            failed = failed or not error.warning
            continue
        stats.files += 1
        try:
            original = engine.read_bytes(path)
            source = engine.decode(original)
            if not args.no_prefilter and not engine.might_match(source.text, config):
                continue
            stats.text_kept += 1
            result = fix_source(source.text, path, config, unsafe_fixes=args.unsafe_fixes)
        except engine.SourceError as exc:
            print(f"{path}: error: {exc}", file=sys.stderr)
            failed = True
            continue
        if result.error:
            print(f"{path}: warning: {result.error}", file=sys.stderr)
        fixed += result.fixed
        held_back += result.held_back
        remaining += len(result.remaining)
        unfixable.extend(result.remaining)
        if not result.changed:
            continue
        changed_files += 1
        if args.diff:
            sys.stdout.writelines(difflib.unified_diff(
                split_lines(source.text, keepends=True), split_lines(result.text, keepends=True),
                fromfile=f"a/{path}", tofile=f"b/{path}"))
            continue
        try:
            write_atomically(path, engine.encode(source, result.text), expected_old=original)
        except (FileChanged, OSError) as exc:
            message = str(exc) if isinstance(exc, FileChanged) else f"cannot write: {exc.strerror or exc}"
            print(f"{path}: error: {message}", file=sys.stderr)
            failed = True
    for d in unfixable:
        print(f"{d.filename}:{d.line}:{d.column}: {d.code} {d.message}", file=sys.stderr)
    verb = "Would fix" if args.diff else "Fixed"
    summary = f"{verb} {fixed} finding{'s' if fixed != 1 else ''} in {changed_files} file{'s' if changed_files != 1 else ''}"
    if remaining:
        summary += f"; {remaining} remaining without a fix"
    summary += "."
    if held_back:
        summary += (f" {held_back} took the safe ping-pong form; `--unsafe-fixes` would apply the "
                    "upstream swap instead (its assumption is in `alloc-lint explain ALC001`).")
    print(summary, file=sys.stderr)
    if args.stats:
        _print_stats(stats, remaining, int(failed))
    if failed:
        return 2
    if remaining or (args.diff and fixed):
        return 1
    return 0


def run_rules(args) -> int:
    if args.format == "json":
        print(json.dumps([{"code": r.code, "name": r.name, "summary": r.summary} for r in ALL_RULES], indent=2))
    else:
        for rule in ALL_RULES:
            print(f"{rule.code}  {rule.name}  {rule.summary}")
    return 0


def run_explain(args) -> int:
    rule = rule_by_code(args.rule)
    if rule is None:
        known = ", ".join(r.code for r in ALL_RULES)
        print(f"alloc-lint: error: unknown rule {args.rule!r} (known: {known})", file=sys.stderr)
        return 2
    print(rule.documentation())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        if args.command == "rules":
            return run_rules(args)
        if args.command == "explain":
            return run_explain(args)
        if args.command == "server":
            from .lsp import main as run_server  # pygls is only imported here
            return run_server()
        config = _config(args)
        return run_check(args, config) if args.command == "check" else run_fix(args, config)
    except ConfigError as exc:
        print(f"alloc-lint: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alloc-lint: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
