"""Human-readable lines: `path:line:col: CODE [*] message`, then a summary.
Errors go to stderr as `path:line:col: error: message` (see cli)."""
from __future__ import annotations

from ..output import plural

BOLD, RED, CYAN, DIM, RESET = "\033[1m", "\033[31m", "\033[36m", "\033[2m", "\033[0m"


def _paint(text: str, code: str, colour: bool) -> str:
    return f"{code}{text}{RESET}" if colour else text


def finding_line(d, unsafe_fixes: bool = False, colour: bool = False) -> str:
    mark = _paint("[*]", CYAN, colour) + " " if d.fix_for(unsafe_fixes) else ""
    where = _paint(d.filename, BOLD, colour) + f":{d.line}:{d.column}:"
    return f"{where} {_paint(d.code, BOLD + RED, colour)} {mark}{d.message}"


def render(diagnostics, errors, unsafe_fixes: bool = False, colour: bool = False, show_fixes: bool = False,
           quiet: bool = False, files: int | None = None) -> str:
    out = []
    for d in diagnostics:
        out.append(finding_line(d, unsafe_fixes, colour))
        if show_fixes:
            for fix in d.fixes:
                note = "" if fix is d.fix_for(unsafe_fixes) else " (not applied without --unsafe-fixes)"
                out.append(_paint(f"    fix ({fix.applicability}, {fix.form}): {fix.message}{note}", DIM, colour))
            if not d.fixes and d.no_fix_reason:
                out.append(_paint(f"    no fix: {d.no_fix_reason}", DIM, colour))
    if not quiet:
        out.extend(summary(diagnostics, errors, unsafe_fixes, files))
    return "\n".join(out) + ("\n" if out else "")


def summary(diagnostics, errors, unsafe_fixes: bool = False, files: int | None = None) -> list[str]:
    failed = sum(1 for e in errors if not e.warning)
    out = []
    if diagnostics:
        out.append(f"Found {plural(len(diagnostics), 'finding')}.")
        fixable = sum(1 for d in diagnostics if d.fix_for(unsafe_fixes))
        if fixable:
            out.append(f"[*] {fixable} fixable with `alloc-lint fix`.")
        if not unsafe_fixes:
            out.extend(held_back_lines(diagnostics, verb="would take"))
    if failed:
        out.append(f"{plural(failed, 'file')} could not be checked (see the errors above).")
    elif not diagnostics:
        out.append("All checks passed!" if files != 0 else "No Python files checked.")
    return out


# Fix forms in plain words, for summaries (a rule's page has the details).
FORM_WORDS = {
    "swap": "the swap form (one buffer per accumulator, exchanged with the accumulator after each merge, "
            "as upstream vLLM does)",
    "pingpong": "the ping-pong form (two buffers per accumulator, used in turn; the first value is only read)",
}


def describe(form: str) -> str:
    return FORM_WORDS.get(form, f"the {form} form")


def held_back_lines(diagnostics, verb: str = "took") -> list[str]:
    """Findings whose preferred fix is unsafe, grouped by rule and forms."""
    groups: dict[tuple, int] = {}
    for d in diagnostics:
        held = d.held_back_fix()
        applied = d.fix_for(False)
        if held is not None:
            key = (d.code, held.form, applied.form if applied else None)
            groups[key] = groups.get(key, 0) + 1
    out = []
    for (code, held, applied), n in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1], g[0][2] or "")):
        now = f"{verb} {describe(applied)}; " if applied else ""
        out.append(f"{n} {'finding' if n == 1 else 'findings'} {now}`--unsafe-fixes` would apply "
                   f"{describe(held)} instead (`alloc-lint explain {code}` says when that is the same program).")
    return out
