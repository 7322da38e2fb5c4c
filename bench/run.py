"""Time alloc-lint against the floor and other linters on real release trees.

    bash bench/setup_tools.sh      # once: third-party tools in their own venvs
    python bench/run.py            # vllm==0.33.0, fast tools, 3 rounds
    python bench/run.py --slow-tools vllm==0.33.0
    python bench/run.py --append --skip-equality sglang==0.5.23 torch==2.13.0

Trees are NAME==VERSION (fetched by bench/fetch.py into the cache outside the repo)
or plain directories. Every command is a subprocess run with the tree as its working
directory and "." as its argument. Wall clock is measured around the child; peak
memory is the command's own peak RSS from GNU time's %M (the largest single
process of the child's tree, not a sum over worker processes; wait4 on a child
forked from this Python would count this Python's memory too). Rounds go round-robin over the tools
so that a noisy moment hits all of them alike; a file-reading pass first warms the
OS page cache, so all numbers are warm-page-cache numbers.

Slow tools (TorchFix, Fixit: ~500 s each on vLLM with 2 cores) run only with
--slow-tools, once each, under --timeout. --tools picks any subset by name (TOOLS).
The Markdown report goes to stdout and to --out (bench/RESULTS.md); --append adds
to that file instead of replacing it.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import fetch  # bench/fetch.py: `python bench/run.py` puts bench/ on sys.path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BENCH = Path(os.environ.get("BENCH_VENV", "/work/venv-bench")) / "bin"
# flake8 runs every installed plugin whatever --select says, so the plain run needs
# a venv with no plugin at all (setup_tools.sh makes it); the ALC run uses the
# project venv, where alloc-lint is installed.
PLAIN = Path(f"{BENCH.parent}-flake8") / "bin"
PROJECT = Path(os.environ.get("PROJECT_VENV", "/work/venv")) / "bin"
ALC = str(PROJECT / "alloc-lint")
COLD_CACHE = os.path.join(tempfile.gettempdir(), "alloc-lint-bench-cold-cache")

# The floor: read every .py file once, in the interpreter alloc-lint starts in.
FLOOR = (
    "import os,sys\nn=0\n"
    "for d,_,fs in os.walk(sys.argv[1]):\n"
    " for f in fs:\n"
    "  if f.endswith('.py'):\n"
    "   with open(os.path.join(d,f),'rb') as h: n+=len(h.read())\n"
    "print(n)"
)
# flake8's default selection, spelled out: a plugin's codes are otherwise added to
# the default, and both flake8 runs must report the same set (plus ALC).
FLAKE8_SELECT = "E,F,W,C90"

LINE_HIT = re.compile(rb"^\S.*?:\d+:\d+:? ", re.MULTILINE)  # path:line:col: (ruff, flake8, ...)
FIXIT_HIT = re.compile(rb"^\S.*?@\d+:\d+ ", re.MULTILINE)  # path@line:col Rule: ...


@dataclass
class Tool:
    label: str
    argv: list  # "." is the tree (cwd)
    hit: re.Pattern | None = LINE_HIT  # what one finding looks like in stdout
    slow: bool = False
    prime: bool = False  # run once untimed before each timed run (warm cache)
    clear: str = ""  # a folder removed before each timed run (cold cache)
    needs: str = ""  # "alloc-lint" or "alc-plugin": checked before running
    checkouts: int = 0  # clear `clear`, then this many times: run once untimed, give every file new times


def cmd(exe: Path, args: str) -> list:
    return [str(exe)] + args.split()


TOOLS = {
    "floor": Tool("floor: read every *.py", [str(PROJECT / "python"), "-c", FLOOR, "."],
                  None),
    "ruff": Tool("ruff check --no-cache --select PERF",
                 cmd(BENCH / "ruff", "check --isolated --no-cache --select PERF "
                     "--exit-zero --output-format concise .")),
    "flake8": Tool(f"flake8 --select {FLAKE8_SELECT} (no plugin installed)",
                   cmd(PLAIN / "flake8", f"--isolated --select {FLAKE8_SELECT} .")),
    "flake8-alc": Tool(f"flake8 --select {FLAKE8_SELECT},ALC (alloc-lint plugin)",
                       cmd(PROJECT / "flake8", f"--isolated --select {FLAKE8_SELECT},ALC ."),
                       needs="alc-plugin"),
    "alc-cold": Tool("alloc-lint check --no-cache (cold)", [ALC, "check", "--no-cache", "."],
                     needs="alloc-lint"),
    "alc-warm": Tool("alloc-lint check (warm: 2nd run)", [ALC, "check", "."], prime=True,
                     needs="alloc-lint"),
    "alc-cold-cache": Tool("alloc-lint check (cold, cache on: empty, then written)",
                           [ALC, "check", "--cache-dir", COLD_CACHE, "."], clear=COLD_CACHE,
                           needs="alloc-lint"),
    # A CI cache restored onto a fresh checkout: every file's stat data is new.
    "alc-restored-1": Tool("alloc-lint check (cache from a cold run, every file touched since)",
                           [ALC, "check", "--cache-dir", COLD_CACHE, "."], clear=COLD_CACHE, checkouts=1,
                           needs="alloc-lint"),
    "alc-restored-2": Tool("alloc-lint check (the same, touched again after one such run)",
                           [ALC, "check", "--cache-dir", COLD_CACHE, "."], clear=COLD_CACHE, checkouts=2,
                           needs="alloc-lint"),
    "alc-fix-diff": Tool("alloc-lint fix --diff --no-cache", [ALC, "fix", "--diff", "--no-cache", "."],
                         hit=None, needs="alloc-lint"),
    "alc-fix-diff-warm": Tool("alloc-lint fix --diff (warm cache)", [ALC, "fix", "--diff", "."], hit=None,
                              prime=True, needs="alloc-lint"),
    "torchfix": Tool("torchfix", cmd(BENCH / "torchfix", "."), slow=True),
    "fixit": Tool("fixit --rules fixit.rules lint",
                  cmd(BENCH / "fixit", "--rules fixit.rules lint ."), FIXIT_HIT, slow=True),
    "flake8-tor": Tool("flake8 --select TOR (TorchFix plugin)",
                       cmd(BENCH / "flake8", "--isolated --select TOR ."), slow=True),
}
FAST = ["floor", "ruff", "flake8", "flake8-alc", "alc-cold", "alc-warm"]
SLOW = ["torchfix", "fixit"]  # flake8-tor (~300 s on vLLM) only if named in --tools


@dataclass
class Run:
    wall: float
    rss_mb: float
    rc: int | None  # None: killed at the timeout
    out: bytes
    err: bytes
    cpu: float = 0.0  # user + system seconds of the command and its reaped workers


TIME = "/usr/bin/time"  # GNU time: reports its child's own peak
# An installed package has its bytecode compiled (pip does it); a sandbox that
# sets PYTHONDONTWRITEBYTECODE=1 would make every run of a Python tool compile
# its modules again (about 0.1 s of alloc-lint's start-up), which users never pay.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def touch_every_file(tree: Path) -> None:
    """New modification (and so change) times for every *.py file, as a fresh
    checkout gives them."""
    now = time.time()
    for path in tree.rglob("*.py"):
        os.utime(path, (now, now))
    time.sleep(2.1)  # past alloc-lint's racy window: as a checkout made before the run


def run_once(argv: list, cwd: Path, timeout: float) -> Run:
    # A child forked from this (large) Python starts with this process's peak
    # RSS in ru_maxrss; GNU time forks from a small process, so its %M is the
    # command's own peak. Without it, fall back to wait4's figure.
    rss_file = tempfile.NamedTemporaryFile(delete=False) if os.path.exists(TIME) else None
    if rss_file:
        argv = [TIME, "-q", "-f", "%M", "-o", rss_file.name, *argv]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err, env=CHILD_ENV,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        killed = []

        def kill():  # the whole group: flake8, TorchFix and Fixit fork workers
            killed.append(True)
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        # wait4, not getrusage(RUSAGE_CHILDREN): that one is the max over every
        # child so far; this is the peak of this child (and its reaped workers).
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        timer.cancel()
        p.returncode = rc = os.waitstatus_to_exitcode(status)  # Popen must not wait
        out.seek(0)
        err.seek(0)
        rc = None if killed else rc
        rss_kb = ru.ru_maxrss
        if rss_file:
            try:
                rss_kb = int(Path(rss_file.name).read_text().split()[-1])
            except (ValueError, IndexError, OSError):
                pass
            os.unlink(rss_file.name)
        return Run(wall, rss_kb / 1024, rc, out.read(), err.read(), ru.ru_utime + ru.ru_stime)


def capture(argv: list) -> str:
    """Output of a quick command, or "" if it fails (missing, crashing, bad plugin)."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return " ".join((r.stdout + r.stderr).split()) if r.returncode == 0 else ""


def dist_version(bindir: Path, dist: str) -> str:
    code = ("import importlib.metadata as m\n"
            f"try: print(m.version({dist!r}))\nexcept Exception: print('-')")
    return capture([str(bindir / "python"), "-c", code]) or "-"


def unavailable(tool: Tool) -> str:
    """Why the tool cannot run, or ""."""
    exe = tool.argv[0]
    if not Path(exe).exists():
        return f"not installed ({exe})"
    if tool.needs == "alc-plugin" and "alloc" not in capture([exe, "--version"]).lower():
        return "alloc-lint flake8 plugin not installed or fails to load"
    if tool.needs == "alloc-lint" and not capture([exe, "--help"]):
        return "alloc-lint not installed or fails to start"
    return ""


def failed(r: Run) -> str:
    """Why a finished run is an error, or "". Linters exit 1 for "found something",
    so rc 0 and 1 are fine unless Python died of an exception (which also gives 1);
    rc 2 and up are usage or internal errors (argparse exits 2), below 0 a signal."""
    if r.rc is not None and (r.rc not in (0, 1) or b"Traceback (most recent" in r.err):
        last = (r.err.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        return f"error, rc {r.rc}: `{last[:100]}`"
    return ""


def fmt_s(x: float) -> str:
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def tree_of(spec: str) -> tuple[str, Path]:
    if "==" in spec and not Path(spec).exists():
        return spec, fetch.fetch(spec)
    return spec, Path(spec).resolve()


# ------------------------------------------------------------ alloc-lint extras


def alc_stats(tree: Path, timeout: float) -> str:
    """Files kept by each stage, from `--stats` (a JSON object on stderr)."""
    r = run_once([ALC, "check", "--no-cache", "--stats", "."], tree, timeout)
    for line in reversed(r.err.decode(errors="replace").splitlines()):
        try:
            s = json.loads(line)
        except ValueError:
            continue
        if isinstance(s, dict):
            g = s.get
            chain = (f"files read {g('files')} → text prefilter kept {g('text_kept')} → "
                     f"ast check kept {g('ast_kept')} → LibCST parsed {g('libcst_parsed')}")
            stage = ("files", "text_kept", "ast_kept", "libcst_parsed")
            rest = ", ".join(f"{k} {v}" for k, v in s.items() if k not in stage)
            return f"{chain}; {rest} ({fmt_s(r.wall)} s with --stats)"
    return f"n/a (`--stats` printed no JSON object on stderr; rc {r.rc})"


def findings(raw: bytes) -> list | None:
    """Sorted findings of `--format json` output: a JSON list, an object holding
    one under a usual key, or JSON lines. None if unreadable."""
    text = raw.decode(errors="replace").strip()
    try:
        data = json.loads(text) if text else []
    except ValueError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError:
            return None
    if isinstance(data, dict):
        keys = [k for k in ("diagnostics", "findings", "results") if k in data]
        data = data[keys[0]] if keys else None
    if not isinstance(data, list):
        return None
    return sorted(json.dumps(d, sort_keys=True) for d in data)


def alc_equality(tree: Path, timeout: float) -> str:
    """Prefilters may only skip files that cannot match: findings must not change."""
    base = [ALC, "check", "--format", "json", "--no-cache"]
    a = run_once(base + ["."], tree, timeout)
    b = run_once(base + ["--no-prefilter", "."], tree, timeout)
    if failed(a) or failed(b):
        return f"n/a: {failed(a) or failed(b)}"
    if b.rc is None:
        return f"n/a: the `--no-prefilter` run timed out after {timeout:.0f} s"
    fa, fb = findings(a.out), findings(b.out)
    if fa is None or fb is None:
        return f"n/a: could not read `--format json` output (rc {a.rc} / {b.rc})"
    same = "**identical**" if fa == fb else "**DIFFERENT**"
    return (f"{same}: {len(fa)} findings with prefilters, {len(fb)} with "
            f"`--no-prefilter` ({fmt_s(b.wall)} s, peak {b.rss_mb:.0f} MB without)")


# ------------------------------------------------------------ report


def machine(args_line: str) -> str:
    info: dict = {}
    try:  # the first processor's fields are enough
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                info.setdefault(k.strip(), v.strip())
    except OSError:
        pass
    cpu = (f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} "
           f"model {info.get('model', '?')}), {float(info.get('cpu MHz', 0)):.0f} MHz, "
           f"{os.cpu_count()} cores"
           + (", virtual machine" if " hypervisor" in info.get("flags", "") else ""))
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = next(int(x.split()[1]) for x in f if "MemTotal" in x)
        mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        pass
    git = ["git", "-C", str(REPO)]
    commit = capture(git + ["rev-parse", "--short", "HEAD"]) or "?"
    if capture(git + ["status", "--porcelain", "--untracked-files=no"]):
        commit += " (with uncommitted changes)"
    now = datetime.datetime.now(datetime.timezone.utc)
    rows = [
        ("date (UTC)", now.strftime("%Y-%m-%d %H:%M")),
        ("command", f"`{args_line}`"),
        ("alloc-lint commit", commit),
        ("CPU", cpu),
        ("memory", mem),
        ("load average (1, 5, 15 min) at the end", " ".join(f"{x:.1f}" for x in os.getloadavg())),
        ("OS", platform.platform()),
        ("Python", capture([str(PROJECT / "python"), "-VV"])),
        ("alloc-lint", (f"{dist_version(PROJECT, 'alloc-lint')}, libcst "
                        f"{dist_version(PROJECT, 'libcst')} ({PROJECT.parent})")),
        ("ruff", capture([str(BENCH / "ruff"), "--version"]) or "-"),
        ("flake8, plain", capture([str(PLAIN / "flake8"), "--version"]) or "-"),
        ("flake8, project venv", capture([str(PROJECT / "flake8"), "--version"]) or "-"),
        ("TorchFix", (f"{dist_version(BENCH, 'TorchFix')}, libcst "
                      f"{dist_version(BENCH, 'libcst')} ({BENCH.parent})")),
        ("Fixit", f"{dist_version(BENCH, 'fixit')}, same venv"),
    ]
    return "\n".join(["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


def median(results: dict, name: str) -> float | None:
    runs = results.get(name)
    if isinstance(runs, list) and runs and not any(r.rc is None or failed(r) for r in runs):
        return statistics.median(r.wall for r in runs)
    return None


def table(nfiles: int, results: dict) -> str:
    ruff = median(results, "ruff")
    head = "| stage | rounds | median s | min–max s | CPU s | files/s | peak RSS MB | findings |"
    lines = [head + " rc | × ruff |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        label = TOOLS[name].label
        if isinstance(runs, str):  # skipped, with the reason
            bad = runs
        else:
            bad = next((failed(r) for r in runs if failed(r)), "")
        if bad:
            lines.append(f"| {label} | – | {bad} | | | | | | | |")
            continue
        ok = [r for r in runs if r.rc is not None]
        rss = max(r.rss_mb for r in runs)
        if not ok:
            lines.append(f"| {label} | {len(runs)} | timed out (> {fmt_s(runs[0].wall)} s)"
                         f" | | | | {rss:.0f} | | | |")
            continue
        walls = [r.wall for r in ok]
        med = statistics.median(walls)
        hits = str(len(TOOLS[name].hit.findall(ok[-1].out))) if TOOLS[name].hit else "–"
        rcs = ",".join(sorted({str(r.rc) for r in ok}))
        lines.append(f"| {label} | {len(ok)} | {fmt_s(med)} | {fmt_s(min(walls))}–"
                     f"{fmt_s(max(walls))} | {fmt_s(statistics.median(r.cpu for r in ok))} "
                     f"| {nfiles / med:.0f} | {rss:.0f} | {hits} "
                     f"| {rcs} | {f'{med / ruff:.2f}' if ruff else '–'} |")
    return "\n".join(lines)


def targets(results: dict, vllm: bool = True) -> str:
    """The vLLM targets; elsewhere only that a cold run with the cache is no
    slower than without it."""
    cold, warm, ruff = (median(results, n) for n in ("alc-cold", "alc-warm", "ruff"))
    plain, plug = median(results, "flake8"), median(results, "flake8-alc")
    rss = max((r.rss_mb for n in ("alc-cold", "alc-warm")
               if isinstance(results.get(n), list) for r in results[n]), default=None)
    checks = [
        ("cold check / ruff PERF <= 1.0", cold and ruff and cold / ruff, 1.0, "{:.2f}"),
        ("warm re-check <= 0.3 s", warm, 0.3, "{:.2f} s"),
        ("flake8 plugin adds < 10%", plain and plug and 100 * (plug / plain - 1), 10,
         "{:.1f}%"),
        ("alloc-lint peak RSS < 300 MB", rss, 300, "{:.0f} MB"),
        ("cold check with the cache / --no-cache <= 1.10 (noise)",
         cold and median(results, "alc-cold-cache") and median(results, "alc-cold-cache") / cold, 1.10, "{:.2f}"),
    ]
    out = []
    if not vllm:
        checks = checks[-1:]
    for text, value, limit, form in checks:
        if not value:  # a missing measurement (None) on either side
            out.append(f"- n/a: {text}")
        else:
            verdict = "PASS" if value <= limit else "FAIL"
            out.append(f"- {verdict}: {text} (is {form.format(value)})")
    return "\n".join(out)


NOTES = (
    "Notes: wall clock of the whole subprocess, start-up included; median and min–max "
    "of the rounds. CPU s: median user + system time of the command and its workers, "
    "which other load on the machine changes less than wall clock. Peak RSS is the "
    "child's ru_maxrss (its largest single process, not a sum: ruff uses threads, flake8/TorchFix/Fixit fork one worker per core). OS page "
    "cache warm; one tool at a time. `findings` counts stdout lines that look like one "
    "finding; `rc` is the exit status (flake8 and Fixit exit 1 when they report "
    "something). Made by `bench/run.py`; tools from `bench/setup_tools.sh`."
)


# ------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trees", nargs="*", default=["vllm==0.33.0"],
                    help="NAME==VERSION or a directory (default vllm==0.33.0)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of fast tools (3)")
    ap.add_argument("--slow-tools", action="store_true",
                    help=f"also run {', '.join(SLOW)}, once each")
    ap.add_argument("--tools", help=f"comma-separated subset of: {', '.join(TOOLS)}")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per run (900)")
    ap.add_argument("--skip-equality", action="store_true",
                    help="skip the --no-prefilter findings check (it parses every file)")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"), help="'' for none")
    ap.add_argument("--append", action="store_true", help="append to --out")
    args = ap.parse_args()
    args_line = " ".join(["python bench/run.py"] + [shlex.quote(a) for a in sys.argv[1:]])

    names = args.tools.split(",") if args.tools else FAST + (SLOW if args.slow_tools else [])
    for n in names:
        if n not in TOOLS:
            sys.exit(f"unknown tool {n!r}; known: {', '.join(TOOLS)}")
    # --stats and the prefilter check go with the alloc-lint rows, when it runs.
    alc_ok = "alc-cold" in names and not unavailable(TOOLS["alc-cold"])

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    sections = []
    for spec in args.trees:
        label, tree = tree_of(spec)
        nfiles = sum(1 for _ in tree.rglob("*.py"))
        log(f"== {label}: {tree} ({nfiles} files)")
        run_once(TOOLS["floor"].argv, tree, args.timeout)  # warm the page cache
        if any(n.startswith("alc") for n in names):  # write alloc-lint's bytecode once, as pip install does
            run_once([ALC, "check", "--no-cache", "--select", "ALC", "--exit-zero", "."], tree, args.timeout)
        results: dict = {n: unavailable(TOOLS[n]) or [] for n in names}
        fast = [n for n in names if not TOOLS[n].slow and results[n] == []]
        for i in range(args.rounds):
            for n in fast:  # round-robin: noise hits every tool alike
                if TOOLS[n].prime:
                    run_once(TOOLS[n].argv, tree, args.timeout)
                if TOOLS[n].clear:
                    shutil.rmtree(TOOLS[n].clear, ignore_errors=True)
                for _ in range(TOOLS[n].checkouts):
                    run_once(TOOLS[n].argv, tree, args.timeout)
                    touch_every_file(tree)
                r = run_once(TOOLS[n].argv, tree, args.timeout)
                results[n].append(r)
                log(f"  round {i + 1} {n}: {r.wall:.2f} s, {r.rss_mb:.0f} MB, rc {r.rc}")
        for n in names:
            if TOOLS[n].slow and results[n] == []:
                log(f"  {n}, once, timeout {args.timeout:.0f} s ...")
                r = run_once(TOOLS[n].argv, tree, args.timeout)
                results[n].append(r)
                log(f"  {n}: {r.wall:.1f} s, {r.rss_mb:.0f} MB, rc {r.rc}")

        parts = [f"### {label} — {nfiles} files", "", table(nfiles, results), ""]
        if "alc-cold" in names and not alc_ok:
            parts.append(f"alloc-lint stages and findings check: n/a (no working "
                         f"alloc-lint in {PROJECT.parent})")
        elif alc_ok:
            log("  alloc-lint --stats ...")
            parts.append(f"Stages (`alloc-lint check --no-cache --stats`): "
                         f"{alc_stats(tree, args.timeout)}")
            if not args.skip_equality:
                log("  alloc-lint with and without prefilters ...")
                same = alc_equality(tree, args.timeout)
                parts += ["", f"Findings with vs without prefilters: {same}"]
        if label.startswith("vllm"):
            parts += ["", "Targets (vLLM tree, same machine, same run):", "",
                      targets(results)]
        elif "alc-cold-cache" in results:
            parts += ["", "Target (same machine, same run):", "", targets(results, vllm=False)]
        sections.append("\n".join(parts))

    report = "\n\n".join(["## alloc-lint benchmark", machine(args_line), *sections,
                          NOTES]) + "\n"
    print(report)
    if args.out:
        with open(args.out, "a" if args.append else "w") as f:
            f.write(("\n---\n\n" if args.append else "") + report)


if __name__ == "__main__":
    main()
