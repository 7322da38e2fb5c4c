"""Counting verdicts: per class of issue 8, and overall."""
from __future__ import annotations

import re
from collections import Counter, defaultdict

from .grammar import CLASS_NAMES, CLASSES


def _kinds(result) -> list:
    if result is None:
        return []
    kinds = sorted({re.sub(r" .*", "", d) for d in result.diffs})
    if result.static:
        kinds.append("static:" + result.static[0].split(":")[0])
    return kinds


def summarize(verdict, meta, text=None) -> dict:
    """A small, picklable record of one verdict (with the program when it was
    miscompiled, so that it can be minimised whatever the grammar becomes)."""
    bad = verdict.miscompiled or verdict.unsafe_broken
    return {
        "program": (text, meta) if bad and text is not None else None,
        "seed": verdict.seed,
        "tags": verdict.tags,
        "shape_tags": meta.get("shape_tags", []),
        "status": verdict.status,
        "orig_raised": bool(verdict.original_raised),
        "safe_changed": bool(verdict.safe and verdict.safe.changed),
        "safe_bad": _kinds(verdict.safe) if verdict.safe and verdict.safe.bad else None,
        "safe_forms": verdict.safe.forms if verdict.safe else [],
        "safe_peak": verdict.safe.peak if verdict.safe else None,
        "unsafe_changed": bool(verdict.unsafe and verdict.unsafe.changed),
        "unsafe_bad": _kinds(verdict.unsafe) if verdict.unsafe and verdict.unsafe.bad else None,
        "crash": verdict.crash,
        "prefilter_miss": verdict.prefilter_miss,
        "silent_no_fix": verdict.silent_no_fix,
        "fix_error": bool((verdict.safe and verdict.safe.error) or (verdict.unsafe and verdict.unsafe.error)),
    }


COLUMNS = ("generated", "fixed safe", "unsafe only", "not fixed", "not detected", "MISCOMPILED", "peak up",
           "unsafe run", "unsafe broken")


class Tally:
    def __init__(self, classes=CLASSES, class_names=CLASS_NAMES):
        self.classes, self.class_names = classes, class_names
        self.rows = defaultdict(Counter)
        self.shape_rows = defaultdict(Counter)
        self.totals = Counter()
        self.kinds = Counter()
        self.unsafe_kinds = Counter()
        self.miscompiled_seeds = []
        self.crash_seeds = []
        self.prefilter_seeds = []
        self.peak_seeds = []
        self.n = 0

    def add(self, s: dict):
        self.n += 1
        row = Counter()
        row["generated"] = 1
        row[{"fixed-safe": "fixed safe", "fixed-unsafe-only": "unsafe only", "not-fixed": "not fixed",
             "not-detected": "not detected"}[s["status"]]] = 1
        if s["safe_bad"] or s["crash"]:
            row["MISCOMPILED"] = 1
            self.miscompiled_seeds.append(s["seed"])
            for k in s["safe_bad"] or ["crash"]:
                self.kinds[k] += 1
        if s["safe_peak"]:
            row["peak up"] = 1
            self.peak_seeds.append((s["seed"], s["safe_forms"], s["safe_peak"]))
        if s["unsafe_changed"]:
            row["unsafe run"] = 1
            if s["unsafe_bad"]:
                row["unsafe broken"] = 1
                for k in s["unsafe_bad"]:
                    self.unsafe_kinds[k] += 1
        for tag in s["tags"]:
            self.rows[tag].update(row)
        for tag in s["shape_tags"]:
            self.shape_rows[tag.split("+")[0]].update(row)
        self.rows["all"].update(row)
        self.totals["original raised"] += s["orig_raised"]
        self.totals["tool crashed"] += bool(s["crash"])
        self.totals["prefilter missed a finding"] += s["prefilter_miss"]
        self.totals["finding with neither fix nor reason"] += bool(s["silent_no_fix"])
        self.totals["FixError"] += s["fix_error"]
        if s["crash"]:
            self.crash_seeds.append(s["seed"])
        if s["prefilter_miss"]:
            self.prefilter_seeds.append(s["seed"])

    def table(self, rows, order) -> str:
        width = max(len(r) for r in order) + 2
        out = ["class".ljust(width) + "".join(c.rjust(14) for c in COLUMNS)]
        for name in order:
            if name not in rows:
                continue
            row = rows[name]
            out.append(name.ljust(width) + "".join(str(row[c]).rjust(14) for c in COLUMNS))
        return "\n".join(out)

    def text(self) -> str:
        all_ = self.rows["all"]
        lines = [self.table(self.rows, list(self.classes) + ["all"]), ""]
        lines += [f"  {c}: {self.class_names[c]}" for c in self.classes]
        lines += ["", "by skeleton:", self.table(self.shape_rows, sorted(self.shape_rows)), ""]
        fixed = all_["fixed safe"]
        lines.append(f"safe fixes applied: {fixed}; miscompiled: {all_['MISCOMPILED']}"
                     + (f" ({100 * all_['MISCOMPILED'] / fixed:.1f}% of safe fixes)" if fixed else ""))
        run = all_["unsafe run"]
        lines.append(f"unsafe fixes run: {run}; broken: {all_['unsafe broken']}"
                     + (f" ({100 * all_['unsafe broken'] / run:.1f}%)" if run else ""))
        lines.append("what the miscompiles changed: " + ", ".join(f"{k} {v}" for k, v in self.kinds.most_common()))
        lines.append("what broken unsafe fixes changed: "
                     + ", ".join(f"{k} {v}" for k, v in self.unsafe_kinds.most_common()))
        lines += [f"{k}: {v}" for k, v in self.totals.items()]
        judged = self.n - all_["not detected"]
        if judged and self.totals["original raised"] > 0.1 * judged:
            lines.append(f"WARNING: {self.totals['original raised']} of {judged} originals raised; the generator or "
                         "the fuzzer's environment is broken and these counts do not mean much")
        if self.crash_seeds:
            lines.append(f"seeds where the tool crashed: {self.crash_seeds[:20]}")
        if self.prefilter_seeds:
            lines.append(f"seeds where the prefilter missed a finding: {self.prefilter_seeds[:20]}")
        forms = Counter(f for _, fs, _ in self.peak_seeds for f in fs)
        lines.append(f"safe fixes that raised peak bytes alive ({len(self.peak_seeds)}), by form: {dict(forms)}; "
                     f"seeds: {[s for s, _, _ in self.peak_seeds[:30]]}")
        lines.append(f"miscompiled seeds ({len(self.miscompiled_seeds)}): {self.miscompiled_seeds[:60]}")
        return "\n".join(lines)
