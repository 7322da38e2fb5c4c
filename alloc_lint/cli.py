"""`alloc-lint check | fix | rules | explain | clean | help`: a thin layer over
the engine.

Exit codes: 0 nothing to report; 1 findings (for `fix`: findings remain, or
with --diff changes would be made); 2 usage error, bad configuration, or a
file that could not be read or parsed (the other files are still checked).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from . import __version__
from .cache import DEFAULT_DIR as DEFAULT_CACHE_DIR
from .cache import Caches, clean
from .config import ConfigError, Resolver
from .output import Output, colour_enabled, plural
from .selectors import SelectorError, parse_list, suggestion


def _selectors(value: str) -> tuple[str, ...]:
    try:
        return parse_list(value)
    except SelectorError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _jobs_value(value: str) -> int:
    try:
        return max(1, int(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes, got {value!r}") from None


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # `--sel` is a typo, not `--select`
        super().__init__(*args, **kwargs)


def _parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = Parser(
        prog="alloc-lint",
        description="Find (and fix) buffers allocated on every loop iteration only to be merged into "
                    "and rebound, in PyTorch code. `alloc-lint help` lists every command and flag.")
    parser.add_argument("--version", action="version", version=f"alloc-lint {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    subs = {}

    def common(sub):
        sub.add_argument("paths", nargs="*", metavar="PATH",
                         help="files or folders (default: .); `-` reads the source from standard input")
        sub.add_argument("--config", metavar="FILE",
                         help="a pyproject.toml or TOML file used for every file, instead of the nearest "
                              "pyproject.toml with [tool.alloc-lint]")
        sub.add_argument("--select", type=_selectors, metavar="RULES",
                         help="comma-separated codes, prefixes (ALC) or rule names to enable (replaces the configured "
                              "select and ignore)")
        sub.add_argument("--ignore", type=_selectors, metavar="RULES",
                         help="comma-separated codes, prefixes or rule names to disable")
        sub.add_argument("--unsafe-fixes", action="store_true", help="also use fixes marked unsafe")
        sub.add_argument("--stdin-filename", metavar="PATH",
                         help="the name of the file read from standard input (for configuration and output)")
        sub.add_argument("--force-exclude", action="store_true",
                         help="apply excludes to paths named on the command line too (pre-commit names every file)")
        sub.add_argument("--no-respect-gitignore", dest="respect_gitignore", action="store_false",
                         help="also check files that .gitignore ignores")
        sub.add_argument("--no-cache", action="store_true", help="neither read nor write the results cache")
        sub.add_argument("--cache-dir", metavar="DIR",
                         help=f"where the cache lives (default: $ALLOC_LINT_CACHE_DIR, else {DEFAULT_CACHE_DIR}/ "
                              "in the project root)")
        sub.add_argument("-j", "--jobs", type=_jobs_value, metavar="N",
                         help="processes that check files (default: all cores; 1 inside pre-commit, which runs hooks "
                              "in parallel)")
        sub.add_argument("--exit-zero", action="store_true",
                         help="exit 0 even when findings remain (errors still exit 2)")
        sub.add_argument("--statistics", action="store_true",
                         help="print the number of findings per rule instead of each finding")
        sub.add_argument("--show-fixes", action="store_true",
                         help="check: show the fix offered under each finding; fix: list what was fixed")
        sub.add_argument("--output-file", metavar="FILE", help="write the report to FILE instead of standard output")
        sub.add_argument("-q", "--quiet", action="store_true", help="print findings and errors only, no summary")
        sub.add_argument("--no-prefilter", action="store_true",
                         help="parse every file (the text prefilter only skips files that cannot match)")
        sub.add_argument("--stats", action="store_true", help="print file counts per stage to stderr (JSON)")

    check = commands.add_parser("check", help="report findings", description="Report findings.")
    common(check)
    check.add_argument("--format", choices=["text", "json", "sarif", "github"], default="text",
                       help="output format (default: text)")
    check.add_argument("--add-noqa", action="store_true",
                       help="add `# noqa: CODE` to every line with a finding, to adopt the tool on existing code")
    subs["check"] = check

    fix = commands.add_parser("fix", help="rewrite files in place", description="Apply fixes.")
    common(fix)
    fix.add_argument("--diff", action="store_true", help="print a unified diff and write nothing")
    fix.add_argument("--exit-non-zero-on-fix", action="store_true",
                     help="exit 1 when anything was fixed, even if nothing remains")
    subs["fix"] = fix

    rules = commands.add_parser("rules", help="list the rules", description="List the rules.")
    rules.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    subs["rules"] = rules
    explain = commands.add_parser("explain", help="print a rule's documentation",
                                  description="Print a rule's documentation.")
    explain.add_argument("rule", metavar="RULE", help="a code (ALC001) or name (alloc-in-loop-merge)")
    subs["explain"] = explain
    clean_ = commands.add_parser("clean", help="remove the results caches",
                                 description="Remove the results cache of the project root of each PATH, "
                                             "and every cache folder under PATH.")
    clean_.add_argument("paths", nargs="*", metavar="PATH", help="folders (default: .)")
    clean_.add_argument("--cache-dir", metavar="DIR", help="also remove this cache folder")
    subs["clean"] = clean_
    help_ = commands.add_parser("help", help="print the reference of every command and flag",
                                description="Print the reference of every command and flag.")
    help_.add_argument("topic", nargs="?", metavar="COMMAND", help="one command only")
    subs["help"] = help_
    subs["server"] = commands.add_parser(
        "server", help="run the language server (LSP over stdio; needs the `server` extra)",
        description="Run the language server: LSP over standard input and output, for editors.")
    return parser, subs


def _unknown_flags(parser, subs, args, extras) -> int:
    sub = subs.get(args.command, parser)
    flags = [o for action in sub._actions for o in action.option_strings]
    first = extras[0]
    hint = suggestion(first.split("=", 1)[0], flags) if first.startswith("-") else ""
    sys.stderr.write(sub.format_usage())
    print(f"{sub.prog}: error: unrecognized argument `{first}`{hint}", file=sys.stderr)
    return 2


def run_help(args, parser, subs) -> int:
    if args.topic:
        if args.topic not in subs:
            print(f"alloc-lint: error: no command `{args.topic}`{suggestion(args.topic, subs)}", file=sys.stderr)
            return 2
        print(subs[args.topic].format_help())
        return 0
    print(parser.format_help())
    for name, sub in subs.items():
        print(f"\n{'=' * 20} alloc-lint {name} {'=' * 20}\n")
        print(sub.format_help())
    return 0


def run_rules(args) -> int:
    from .rules import ALL_RULES

    if args.format == "json":
        print(json.dumps([{"code": r.code, "name": r.name, "summary": r.summary, "fix": r.fix_availability,
                           "options": list(r.options)} for r in ALL_RULES], indent=2))
    else:
        for rule in ALL_RULES:
            print(f"{rule.code}  {rule.name}  (fix: {rule.fix_availability})  {rule.summary}")
        print("\nfix: whether `alloc-lint fix` can rewrite a finding: always, sometimes (when it can prove "
              "the rewrite changes nothing) or never. `alloc-lint explain CODE` prints a rule's page.")
    return 0


def run_explain(args) -> int:
    from .rules import ALL_RULES, rule_by_code

    rule = rule_by_code(args.rule)
    if rule is None:
        known = [r.code for r in ALL_RULES] + [r.name for r in ALL_RULES]
        print(f"alloc-lint: error: unknown rule `{args.rule}`{suggestion(args.rule, known)} "
              f"(known: {', '.join(known)})", file=sys.stderr)
        return 2
    print(rule.documentation())
    return 0


def run_clean(args) -> int:
    paths = args.paths or ["."]
    resolver = Resolver()
    folders = []
    override = args.cache_dir or os.environ.get("ALLOC_LINT_CACHE_DIR")
    if override:
        folders.append(override)
    for path in paths:
        folders.append(resolver.for_folder(path).root_path / DEFAULT_CACHE_DIR)
        for root, dirs, _ in os.walk(path):
            if DEFAULT_CACHE_DIR in dirs:
                folders.append(os.path.join(root, DEFAULT_CACHE_DIR))
            dirs[:] = [d for d in dirs if d not in (DEFAULT_CACHE_DIR, ".git", "node_modules")]
    removed = clean(dict.fromkeys(os.path.abspath(f) for f in folders))
    for folder in removed:
        print(f"Removed {folder}", file=sys.stderr)
    print(f"Removed {plural(len(removed), 'cache folder')}.", file=sys.stderr)
    return 0


def _jobs(args) -> int:
    if args.jobs is not None:
        return args.jobs
    if os.environ.get("PRE_COMMIT"):
        return 1  # pre-commit already runs one hook process per core
    return os.cpu_count() or 1


def _caches(args):
    if args.no_cache:
        return None
    return Caches(args.cache_dir or os.environ.get("ALLOC_LINT_CACHE_DIR"))


def _stdin_mode(args) -> bool:
    if args.paths == ["-"]:
        return True
    if "-" in (args.paths or []):
        raise _UsageError("`-` (standard input) cannot be combined with other paths")
    return not args.paths and args.stdin_filename is not None


class _UsageError(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    parser, subs = _parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        return _unknown_flags(parser, subs, args, extras)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        if args.command == "help":
            return run_help(args, parser, subs)
        if args.command == "rules":
            return run_rules(args)
        if args.command == "explain":
            return run_explain(args)
        if args.command == "clean":
            return run_clean(args)
        if args.command == "server":
            from .lsp import main as run_server  # pygls is only imported here
            return run_server()
        from .commands import run_check, run_fix

        resolver = Resolver(args.config, select=args.select, ignore=args.ignore)
        out = Output(args.output_file, colour=colour_enabled(sys.stdout) and not args.output_file)
        stdin = _stdin_mode(args)
        with out:
            if args.command == "check":
                return run_check(args, resolver, out, _caches(args), _jobs(args), stdin)
            return run_fix(args, resolver, out, _caches(args), _jobs(args), stdin)
    except (ConfigError, _UsageError) as exc:
        print(f"alloc-lint: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 1
    except OSError as exc:  # an --output-file that cannot be written
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"alloc-lint: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alloc-lint: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The `alloc-lint` executable: main(), then exit without tearing the
    interpreter down (as mypy does): freeing every object one by one and a
    last garbage collection cost a run about 0.05 s, and nothing is left to
    do. Everything is written by then: outputs are closed, the cache saved."""
    code = main() or 0
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # `alloc-lint check | head`
        code = code or 1
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
