"""Human-readable lines: `path:line:col: CODE [*] message`, then a summary."""
from __future__ import annotations


def render(diagnostics, errors, unsafe_fixes: bool = False) -> str:
    out = []
    for d in diagnostics:
        mark = "[*] " if d.fix_for(unsafe_fixes) else ""
        out.append(f"{d.filename}:{d.line}:{d.column}: {d.code} {mark}{d.message}")
    if diagnostics:
        fixable = sum(1 for d in diagnostics if d.fix_for(unsafe_fixes))
        held = sum(1 for d in diagnostics if not unsafe_fixes and d.held_back_fix())
        noun = "finding" if len(diagnostics) == 1 else "findings"
        out.append(f"Found {len(diagnostics)} {noun}.")
        if fixable:
            out.append(f"[*] {fixable} fixable with `alloc-lint fix`.")
        if held:
            out.append(f"{held} of them would take the upstream swap form with `--unsafe-fixes` "
                       "(see `alloc-lint explain ALC001`, Fix safety).")
    return "\n".join(out) + ("\n" if out else "")
