"""The examples, rewritten by alloc-lint, keep their results and allocate less (CPU).

Runs `examples/verify.py --check --trace` once, on every example (ALC001 and ALC002) at
small sizes and two chunk counts, and checks its JSON report against what each
example's fix must do: DESIGN.md section 3 and the memory promise of a safe fix
(verify.py's docstring). The assertions hold whichever reuse form the fixer picks
(ping-pong or swap); what they pin is what is promised. The harness's own
measurements (caller's arguments, allocation counts, live bytes at merges, peak) are
tested on small hand-written programs whose answers are known, including programs
that break each promise and must fail --check. The GPU numbers come from the same
harness (`examples/gpu_results.sh`).
"""

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
try:
    from alloc_lint import fix_source  # noqa: F401
except ImportError:  # the fixer is being written; this must not stay skipped
    pytest.skip("alloc_lint.fix_source is not importable yet", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CHUNKS = (4, 8)

# ALC001 examples: accumulators in the fixed group, and PEAK_EXTRA_BUFFERS (the safe
# fix's peak over the call is the original's plus this many buffers per accumulator).
# 1 where the loop computes the next chunk while the previous one is still bound (it
# holds at least as much between merges as at them), 0 where it allocates nothing
# between merges.
ALC001 = {
    "mla_chunked_prefill": {"accumulators": 2, "peak_extra": 1},
    "mla_context_parallel": {"accumulators": 2, "peak_extra": 1},
    "padded_v_layout_hazard": {"accumulators": 2, "peak_extra": 1},
    "ring_attention": {"accumulators": 2, "peak_extra": 1},
    "split_kv_decode": {"accumulators": 2, "peak_extra": 0},
}
# ALC002 examples: only --unsafe-fixes rewrites them (the part comes from an opaque
# call). For n parts: the concatenations the original makes (the collected form makes
# 1), and how many parts' bytes they copy (the collected form copies n).
ALC002 = {
    "alc002_video_vae_decode": {
        "cats": lambda n: n - 1,
        "copies": lambda n: n * (n + 1) // 2 - 1,
        "part_bytes": lambda s: s["batch"] * 3 * (8 * s["height"]) * (8 * s["width"]) * 2,  # bf16
    },
    "alc002_generate_logits": {
        "cats": lambda n: n,
        "copies": lambda n: n * (n + 1) // 2,
        "part_bytes": lambda s: s["batch"] * s["vocab"] * 4,  # fp32 logits
    },
}
NO_FIX = {"alc002_generate_ids_read_in_loop"}  # read in the loop: reported, no fix at all


def load_verify():
    spec = importlib.util.spec_from_file_location("verify", EXAMPLES / "verify.py")
    verify = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(verify)
    verify.import_torch()
    return verify


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "report.json"
    cmd = [
        sys.executable, str(EXAMPLES / "verify.py"), "--check", "--device", "cpu",
        "--small", "--chunks", ",".join(map(str, CHUNKS)), "--warmup", "0", "--repeat", "1",
        "--trace", "--json", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert out.exists(), proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert proc.returncode == (1 if report["failures"] else 0), proc.stderr
    return report


def runs_of(report, name):
    runs = [run for run in report["runs"] if run["example"] == name]
    assert sorted(run["size"][run["chunk_param"]] for run in runs) == list(CHUNKS)
    return runs


def test_every_example_is_covered_and_passes_the_check(report):
    examples, _ = load_verify().discover()
    assert set(examples) == set(ALC001) | set(ALC002) | NO_FIX, "new example: add it here"
    assert {run["example"] for run in report["runs"]} == set(examples)
    assert report["complete"]
    assert report["failures"] == []


# --------------------------------------------------------------------------- ALC001


@pytest.mark.parametrize("name", sorted(ALC001))
def test_fixer_rewrote_the_example(report, name):
    fixes = report["fixes"][name]
    assert fixes["safe"]["fixed"] == ALC001[name]["accumulators"]
    assert fixes["safe"]["remaining"] == []
    assert fixes["unsafe"]["held_back"] == 0


@pytest.mark.parametrize("name", sorted(ALC001))
def test_safe_form_keeps_results_and_caller_arguments(report, name):
    for run in runs_of(report, name):
        original, safe = run["forms"]["original"], run["forms"]["safe"]
        assert safe["status"] == "ok"
        assert safe["inputs"] == original["inputs"]
        assert safe["comparison"]["bitwise_equal"], safe["comparison"]
        assert safe["comparison"]["caller_args_differ"] == []
        assert safe["bytes_copied"] == original["bytes_copied"]


@pytest.mark.parametrize("name", sorted(ALC001))
def test_allocations_per_form(report, name):
    """The original allocates one buffer per accumulator per merge; a fixed loop a
    constant number per accumulator: 1 (swap) or 2 (ping-pong), whichever form the fixer
    picks, the same at every chunk count. Everything else the call allocates (chunk
    outputs, keys and values, ...) is the same."""
    accumulators = ALC001[name]["accumulators"]
    for form in ("safe", "unsafe"):
        kept = set()
        for run in runs_of(report, name):
            m, original = run["forms"][form], run["forms"]["original"]
            # (ring_attention at rank -2 attends world_size - 1 blocks: as many merges
            # as the others' chunks - 1.)
            merges = run["size"][run["chunk_param"]] - 1
            saved = original["alloc_calls"] - m["alloc_calls"]
            assert saved % accumulators == 0, (form, saved)
            kept.add(merges - saved // accumulators)
            assert m["alloc_bytes"] < original["alloc_bytes"]
        assert len(kept) == 1 and kept <= {1, 2}, (form, kept)


@pytest.mark.parametrize("name", sorted(ALC001))
def test_peak_memory_of_the_safe_form(report, name):
    """At every merge no more live than the original; over the call exactly
    PEAK_EXTRA_BUFFERS * R more (R: the results, one buffer per accumulator)."""
    extra = ALC001[name]["peak_extra"]
    for run in runs_of(report, name):
        original, safe = run["forms"]["original"], run["forms"]["safe"]
        unit = run["unit_bytes"]
        assert unit == original["result_bytes"] > 0
        assert safe["peak_allowed_bytes"] == extra * unit  # the example declares it
        assert safe["peak_bytes"] - original["peak_bytes"] == extra * unit
        rows, ref = safe["merges"]["rows"], original["merges"]["rows"]
        assert len(rows) == len(ref) == run["size"][run["chunk_param"]]  # merges + "end"
        for mine, theirs in zip(rows, ref):
            assert mine["at"] <= theirs["at"], (mine, theirs)
            assert mine["between"] <= theirs["between"] + extra * unit, (mine, theirs)


def test_where_the_extra_buffer_is_held(report):
    """vLLM's loop: the original peaks at its first merge and holds as much between
    merges as at them; a reuse form holds its scratch buffer while the next chunk is
    computed, the swap from merge 2 on, the lazy ping-pong from merge 3 on."""
    run = next(r for r in runs_of(report, "mla_chunked_prefill") if r["size"]["chunks"] == 8)
    original = run["forms"]["original"]["merges"]
    assert original["where"] == "at merge 1"
    assert all(r["at"] == r["between"] for r in original["rows"] if r["k"] != "end")
    unit = run["unit_bytes"]
    for form in ("safe", "unsafe"):
        rows = run["forms"][form]["merges"]["rows"]
        first = next(r["k"] for r in rows if r["between"] > original["peak"])
        assert first in (2, 3)  # swap: 2, lazy ping-pong: 3 (eager ping-pong: 1)
        assert max(r["between"] for r in rows) == original["peak"] + unit


@pytest.mark.parametrize("name", sorted(ALC001))
def test_unsafe_form_changes_only_the_hazard_example(report, name):
    for run in runs_of(report, name):
        unsafe = run["forms"]["unsafe"]
        if name == "padded_v_layout_hazard":
            # 4 and 8 chunks: at least 3 merges, so the swap reads a padded suffix
            # with the seed's strides where the original did not.
            assert not unsafe["comparison"]["bitwise_equal"]
            assert unsafe["expected"] == "differ"
        else:
            assert unsafe["comparison"]["bitwise_equal"]
            assert unsafe["comparison"]["caller_args_differ"] == []
        assert unsafe["status"] == "ok"


# --------------------------------------------------------------------------- ALC002


@pytest.mark.parametrize("name", sorted(ALC002))
def test_alc002_unsafe_fix_copies_each_part_once(report, name):
    fixes = report["fixes"][name]
    assert (fixes["safe"]["fixed"], len(fixes["safe"]["remaining"])) == (0, 1)
    assert (fixes["unsafe"]["fixed"], fixes["unsafe"]["remaining"]) == (1, [])
    expect = ALC002[name]
    copied = {}
    for run in runs_of(report, name):
        n = run["size"][run["chunk_param"]]
        original, safe, unsafe = (run["forms"][f] for f in ("original", "safe", "unsafe"))
        assert safe["same_text_as"] == "original" and safe["status"] == "ok"
        assert unsafe["status"] == "ok"
        assert unsafe["comparison"]["bitwise_equal"]
        assert unsafe["comparison"]["caller_args_differ"] == []
        # One concatenation after the loop instead of one per part: the parts are
        # copied once, where the original copies the whole prefix again at every
        # part; every other copy (the tokens' stack) is the same.
        part = expect["part_bytes"](run["size"])
        saved = original["bytes_copied"] - unsafe["bytes_copied"]
        assert saved == (expect["copies"](n) - n) * part
        assert original["alloc_calls"] - unsafe["alloc_calls"] == expect["cats"](n) - 1
        assert unsafe["alloc_bytes"] < original["alloc_bytes"]
        copied[n] = unsafe["bytes_copied"]
    assert copied[8] == 2 * copied[4]  # linear in the number of parts


def test_alc002_collected_parts_peak(report):
    """The collected form's peak is the original's: the parts list holds what the
    growing tensor held. Its one concatenation runs after the loop, so what the last
    iteration made after its concatenation is alive then too (here the last token)."""
    for name in ALC002:
        for run in runs_of(report, name):
            original, unsafe = run["forms"]["original"], run["forms"]["unsafe"]
            batch = run["size"]["batch"]
            extra = batch * 8 if name == "alc002_generate_logits" else 0  # int64 token
            assert unsafe["peak_bytes"] - original["peak_bytes"] == extra


def test_alc002_read_in_loop_gets_no_fix(report):
    (name,) = NO_FIX
    fixes = report["fixes"][name]
    for form in ("safe", "unsafe"):
        assert fixes[form]["fixed"] == 0 and len(fixes[form]["remaining"]) == 1
    for run in runs_of(report, name):
        for form in ("safe", "unsafe"):
            m = run["forms"][form]
            assert m["same_text_as"] == "original"
            assert (m["expected"], m["status"]) == ("no fix", "ok")


# --------------------------------------------------------------------------- every example


@pytest.mark.parametrize("name", sorted(set(ALC001) | set(ALC002) | NO_FIX))
def test_example_can_be_called_again_on_the_same_inputs(name):
    """The timing loop calls each form repeatedly on one set of inputs, as real callers do."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        mod = importlib.import_module(name)
    finally:
        sys.path.pop(0)
    inputs = mod.make_inputs("cpu", 0, **mod.SMALL)
    first = [t.clone() for t in verify_tuple(mod.run_loop(inputs))]
    second = verify_tuple(mod.run_loop(inputs))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def verify_tuple(result):
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


# --------------------------------------------------------------------------- the harness


PROGRAM = '''
import torch

CHUNK_PARAM = "parts"
SMALL = {}


def make_inputs(device, seed=0, n=1000, parts=4):
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(n, generator=g), "parts": parts}


def run_loop(inputs):
    acc = inputs["x"]
    for i in range(inputs["parts"]):
        tmp = torch.empty_like(acc)
        torch.add(acc, i, out=tmp)
        acc = tmp
    return acc
'''

# The swap on a first value the caller owns: same results, the caller's x overwritten.
SWAP_INTO_CALLER = PROGRAM.replace(
    '''    acc = inputs["x"]
    for i in range(inputs["parts"]):
        tmp = torch.empty_like(acc)
        torch.add(acc, i, out=tmp)
        acc = tmp''',
    '''    acc = inputs["x"]
    tmp = None
    for i in range(inputs["parts"]):
        if tmp is None:
            tmp = torch.empty_like(acc)
        torch.add(acc, i, out=tmp)
        acc, tmp = tmp, acc''',
)
# Holds a second buffer from the start: fewer allocations, one buffer more at the peak.
EAGER_BUFFERS = PROGRAM.replace(
    '''    acc = inputs["x"]
    for i in range(inputs["parts"]):
        tmp = torch.empty_like(acc)
        torch.add(acc, i, out=tmp)
        acc = tmp''',
    '''    acc = inputs["x"]
    bufs = [torch.empty_like(acc), torch.empty_like(acc)]
    for i in range(inputs["parts"]):
        tmp = bufs[i % 2]
        torch.add(acc, i, out=tmp)
        acc = tmp''',
)


def measure_program(verify, tmp_path, forms, parts, original=PROGRAM):
    """verify.measure and verify.judge on hand-written forms of one program."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import kernels  # the programs launch their kernels through it, as the examples do
    finally:
        sys.path.pop(0)
    modules = {}
    for form, text in {"original": original, **forms}.items():
        path = tmp_path / f"prog_{form}.py"
        path.write_text(text)
        modules[form] = verify.load_module(path, f"prog_{form}")
    size = {"n": 1000, "parts": parts}
    entry = verify.measure(modules, {}, size, "cpu", 0, 0, 1, kernels, keep_events=False)
    texts = {"original": original, **forms}
    unit = entry["original"]["result_bytes"]
    failures = verify.judge("prog", modules["original"], entry, texts, size, unit)
    return entry, failures


def test_harness_catches_a_write_into_the_callers_tensor(tmp_path):
    verify = load_verify()
    entry, failures = measure_program(verify, tmp_path, {"safe": SWAP_INTO_CALLER}, parts=4)
    safe = entry["safe"]
    assert safe["comparison"]["bitwise_equal"]  # the results alone hide it
    assert safe["comparison"]["caller_args_differ"] == ["inputs['x']"]
    assert entry["original"]["caller_changed_by_call"] == []
    assert safe["caller_changed_by_call"] == ["inputs['x']"]
    assert any("caller's arguments differ" in f for f in failures), failures


def test_harness_counts_allocations_and_peak(tmp_path):
    verify = load_verify()
    entry, failures = measure_program(verify, tmp_path, {"safe": EAGER_BUFFERS}, parts=4)
    original, safe = entry["original"], entry["safe"]
    buffer = 1000 * 4
    assert (original["alloc_calls"], original["alloc_bytes"]) == (4, 4 * buffer)
    # At most acc and tmp are alive in the original: the input is not counted.
    assert original["peak_bytes"] == 2 * buffer
    assert (safe["alloc_calls"], safe["alloc_bytes"]) == (2, 2 * buffer)
    assert safe["peak_bytes"] == 2 * buffer
    assert failures == []
    # With one part the original needs one buffer, the eager form two: more allocated,
    # and a higher peak (the program declares no PEAK_EXTRA_BUFFERS: 0).
    entry, failures = measure_program(verify, tmp_path, {"safe": EAGER_BUFFERS}, parts=1)
    assert entry["original"]["peak_bytes"] == buffer
    assert entry["safe"]["peak_bytes"] == 2 * buffer
    assert [f.split(": ")[1].split(" ")[0] for f in failures] == [
        "alloc_calls", "alloc_bytes", "peak"
    ]  # fmt: skip


# A vLLM-shaped loop: each chunk's output is computed fresh inside the loop, while the
# previous chunk's output is still bound. The merge and the chunk are kernel launches,
# so the harness sees the merges. B = one buffer = R (one accumulator).
CHUNKED = '''
import torch
from kernels import launch

CHUNK_PARAM = "parts"
SMALL = {}
PEAK_EXTRA_BUFFERS = 1


def make_inputs(device, seed=0, n=1000, parts=4):
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(n, generator=g), "parts": parts}


def run_loop(inputs):
    x = inputs["x"]
    acc = None
    for i in range(inputs["parts"]):
        chunk = launch("chunk", torch.mul, x, i + 1)
        if acc is None:
            acc = chunk
        else:
            tmp = torch.empty_like(acc)
            launch("merge", torch.add, acc, chunk, out=tmp)
            acc = tmp
    return acc
'''
MERGE = '''            tmp = torch.empty_like(acc)
            launch("merge", torch.add, acc, chunk, out=tmp)
            acc = tmp
'''
# What the fixer emits (DESIGN 3): the second buffer allocated at the second merge.
LAZY_PING_PONG = CHUNKED.replace(
    "    acc = None\n", "    acc = None\n    tmp_alt = None\n    tmp = None\n"
).replace(
    MERGE,
    '''            if tmp is None:
                tmp = torch.empty_like(acc)
            launch("merge", torch.add, acc, chunk, out=tmp)
            acc, tmp, tmp_alt = tmp, tmp_alt, tmp
''',
)
# Both buffers at the first merge, while the first chunk is alive: +R at merge 1.
EAGER_PING_PONG = LAZY_PING_PONG.replace(
    "                tmp = torch.empty_like(acc)\n",
    "                tmp = torch.empty_like(acc)\n"
    "                tmp_alt = torch.empty_like(acc)\n",
)
# A third buffer held from the first merge on: +2R between merges.
THIRD_BUFFER = LAZY_PING_PONG.replace(
    "    tmp = None\n", "    tmp = None\n    spare = None\n"
).replace(
    "            acc, tmp, tmp_alt = tmp, tmp_alt, tmp\n",
    "            acc, tmp, tmp_alt = tmp, tmp_alt, tmp\n"
    "            if spare is None:\n"
    "                spare = torch.empty_like(acc)\n",
)


def failed(failures, what):
    return [f for f in failures if what in f]


def test_harness_accepts_one_extra_buffer_where_declared(tmp_path):
    verify = load_verify()
    entry, failures = measure_program(
        verify, tmp_path, {"safe": LAZY_PING_PONG}, parts=6, original=CHUNKED
    )
    buffer = 1000 * 4
    original, safe = entry["original"], entry["safe"]
    assert failures == []
    assert original["result_bytes"] == buffer
    assert safe["peak_bytes"] - original["peak_bytes"] == buffer
    assert safe["peak_allowed_bytes"] == buffer
    at_merges = [r["at"] for r in original["merges"]["rows"]]
    assert [r["at"] for r in safe["merges"]["rows"]] == at_merges
    assert len(safe["merges"]["rows"]) == 6  # 5 merges and "end"
    # Declared 0 (the default), the same program fails on its peak over the call.
    strict = CHUNKED.replace("PEAK_EXTRA_BUFFERS = 1\n", "")
    _, failures = measure_program(verify, tmp_path, {"safe": LAZY_PING_PONG}, parts=6,
                                  original=strict)  # fmt: skip
    assert len(failures) == 1 and failed(failures, "more than PEAK_EXTRA_BUFFERS = 0 allows")


def test_harness_fails_two_extra_buffers(tmp_path):
    verify = load_verify()
    entry, failures = measure_program(
        verify, tmp_path, {"safe": THIRD_BUFFER}, parts=6, original=CHUNKED
    )
    assert entry["safe"]["comparison"]["bitwise_equal"]
    assert entry["safe"]["peak_bytes"] - entry["original"]["peak_bytes"] == 2 * 1000 * 4
    assert failed(failures, "(+2.00R), more than PEAK_EXTRA_BUFFERS = 1 allows"), failures


def test_harness_fails_more_live_at_a_merge(tmp_path):
    """The eager ping-pong stays within +R over the call, but holds both buffers at
    the first merge, while the first chunk is alive: more than the original there."""
    verify = load_verify()
    entry, failures = measure_program(
        verify, tmp_path, {"safe": EAGER_PING_PONG}, parts=6, original=CHUNKED
    )
    delta = entry["safe"]["peak_bytes"] - entry["original"]["peak_bytes"]
    assert delta == 1000 * 4
    assert len(failures) == 1 and failed(failures, "live bytes at merge 1 "), failures


def test_harness_caps_the_declared_allowance(tmp_path):
    verify = load_verify()
    lax = CHUNKED.replace("PEAK_EXTRA_BUFFERS = 1", "PEAK_EXTRA_BUFFERS = 2")
    _, failures = measure_program(verify, tmp_path, {"safe": THIRD_BUFFER}, parts=6, original=lax)
    assert failed(failures, "PEAK_EXTRA_BUFFERS = 2; a safe fix may hold at most one")
    assert failed(failures, "more than PEAK_EXTRA_BUFFERS = 0 allows")


def test_harness_fails_an_unchanged_safe_rewrite_and_an_unexpected_one(tmp_path):
    verify = load_verify()
    _, failures = measure_program(verify, tmp_path, {"safe": CHUNKED}, parts=3, original=CHUNKED)
    assert failures == ["prog (parts=3) safe: the safe rewrite left the file unchanged"]
    no_fix = CHUNKED + "EXPECT_SAFE_FIX = False\n"
    _, failures = measure_program(
        verify, tmp_path, {"safe": LAZY_PING_PONG}, parts=3, original=no_fix
    )
    assert failed(failures, "the safe rewrite changed the file where the example expects none")


def test_growth_check_wants_fewer_allocations_per_chunk():
    verify = load_verify()

    def run(chunks, original, fixed):
        forms = {"original": {"alloc_calls": original}, "unsafe": {"alloc_calls": fixed}}
        return {"example": "x", "size": {"n": chunks}, "chunk_param": "n", "forms": forms}

    constant = [run(4, 8, 2), run(8, 16, 2)]
    assert verify.check_growth(constant, {"x": "unsafe"}) == []
    linear = [run(4, 8, 5), run(8, 16, 13)]
    assert verify.check_growth(linear, {"x": "unsafe"}) == [
        "x unsafe: allocator calls grow as fast as the original's (5 -> 13 against 8 -> 16)"
    ]
    assert verify.check_growth(linear, {"x": None}) == []


def test_tracker_counts_views_once_and_frees_at_the_last_reference():
    verify = load_verify()
    tracker = verify.make_tracker("cpu")
    with tracker:
        a = torch.empty(1000)  # 4000 bytes
        view = a[10:20]
        a.add_(1)  # in place: nothing new
        b = torch.cat([a, a])  # 8000 bytes, copied
        del a
        live_with_view = tracker.live
        del view
        live_after = tracker.live
    assert tracker.calls == 2 and tracker.bytes == 12000
    assert live_with_view == 12000 and live_after == 8000
    assert tracker.peak == 12000
    assert tracker.copied == 8000
    del b
    assert tracker.live == 0


def test_caller_state_sees_one_byte_changed_with_or_without_numpy(monkeypatch):
    verify = load_verify()
    base = torch.arange(1003, dtype=torch.int32).view(torch.uint8)[:4011]
    changed = base.clone()
    changed[4010] ^= 1  # the last, odd byte: outside the 8-byte words
    for numpy_missing in (False, True):
        if numpy_missing:
            monkeypatch.setitem(sys.modules, "numpy", None)  # import numpy raises
        a, b, c = ({"x": t.clone()} for t in (base, base, changed))
        assert verify.caller_state(a) == verify.caller_state(b) != verify.caller_state(c)
        b["x"][17] += 1
        assert verify.caller_state(a) != verify.caller_state(b)


def test_reference_merge_matches_the_formula():
    """The CPU merge, including rows that saw no keys (lse -inf, or +inf as FA2 says)."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from kernels import merge_attn_states
    finally:
        sys.path.pop(0)
    g = torch.Generator().manual_seed(0)
    tokens, heads, dim = 5, 3, 8
    p_out, s_out = (torch.randn(tokens, heads, dim, generator=g) for _ in range(2))
    p_lse, s_lse = (torch.randn(heads, tokens, generator=g) for _ in range(2))
    p_lse[0, 0] = s_lse[0, 0] = float("-inf")  # both empty
    p_lse[1, 1] = float("inf")  # prefix empty, FA2 style
    out, out_lse = torch.empty_like(p_out), torch.empty_like(p_lse)
    merge_attn_states(out, out_lse, p_out, p_lse, s_out, s_lse)

    p = torch.where(p_lse == float("inf"), float("-inf"), p_lse).double()
    s = s_lse.double()
    lse = torch.logaddexp(p, s)
    w_p = torch.exp(p - lse).nan_to_num(0.0).t().unsqueeze(-1)
    w_s = torch.exp(s - lse).nan_to_num(0.0).t().unsqueeze(-1)
    torch.testing.assert_close(out.double(), p_out.double() * w_p + s_out.double() * w_s)
    torch.testing.assert_close(out_lse.double(), lse)
    assert out[0, 0].eq(0).all() and out_lse[0, 0] == float("-inf")
    torch.testing.assert_close(out[1, 1], s_out[1, 1])


def test_attention_stand_in_matches_softmax_attention():
    """kernels.flash_attn_with_lse (CPU path) against torch's softmax attention."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from kernels import flash_attn_with_lse
    finally:
        sys.path.pop(0)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(6, 2, 16, generator=g), torch.randn(6, 2, 16, generator=g)
    v = torch.randn(6, 2, 8, generator=g)
    for causal in (False, True):
        out, lse = flash_attn_with_lse(q, k, v, 0.25, causal=causal)
        scores = torch.einsum("thd,khd->htk", q, k) * 0.25
        if causal:
            scores = scores.masked_fill(torch.ones(6, 6, dtype=torch.bool).triu(1), -torch.inf)
        expected = torch.einsum("htk,khd->thd", scores.softmax(-1), v)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(lse, scores.logsumexp(-1))
        assert out.is_contiguous() and lse.is_contiguous()
