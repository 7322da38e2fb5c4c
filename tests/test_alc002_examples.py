"""The ALC002 examples (examples/alc002_*.py), rewritten by alloc-lint, on CPU.

examples/verify.py measures them in full (allocations, bytes copied, peak, time; the
GPU report). This checks the promises their docstrings make, quickly: the decoder
and logits loops are reported with an unsafe fix only, which keeps the results
bitwise and copies each part once; the loop that feeds the ids back to the model is
reported with no fix at all.
"""
import importlib.util
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from alloc_lint import check_source, fix_source  # noqa: E402
from alloc_lint.config import Config  # noqa: E402

from test_alc002_fix import CountCopies, _equal  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ONLY = Config(select=("ALC002",))


def load(name: str, text: str):
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_loader(name, loader=None)
        module = importlib.util.module_from_spec(spec)
        exec(compile(text, str(EXAMPLES / f"{name}.py"), "exec"), module.__dict__)
        return module
    finally:
        sys.path.pop(0)


def measure(module, chunks):
    size = {**module.SMALL, module.CHUNK_PARAM: chunks}
    counter = CountCopies()
    with counter:
        result = module.run_loop(module.make_inputs("cpu", 0, **size))
    return result, counter


@pytest.mark.parametrize("name", ["alc002_video_vae_decode", "alc002_generate_logits"])
def test_unsafe_fix_keeps_results_and_copies_each_part_once(name):
    text = (EXAMPLES / f"{name}.py").read_text()
    [finding] = check_source(text, f"{name}.py", config=ONLY)
    assert [f.applicability for f in finding.fixes] == ["unsafe"]
    assert fix_source(text, config=ONLY).text == text
    rewritten = fix_source(text, config=ONLY, unsafe_fixes=True).text
    original, fixed = load(name, text), load(name, rewritten)
    copied = {}
    for chunks in (8, 32):
        a, before = measure(original, chunks)
        b, after = measure(fixed, chunks)
        assert _equal(a, b)
        assert after.cats == 1 and before.cats == chunks - (name == "alc002_video_vae_decode")
        copied[chunks] = (before.cat_bytes, after.cat_bytes)
    assert copied[32][1] == 4 * copied[8][1]  # linear
    assert copied[32][0] > 12 * copied[8][0]  # quadratic


def test_ids_read_by_the_model_get_no_fix():
    name = "alc002_generate_ids_read_in_loop"
    text = (EXAMPLES / f"{name}.py").read_text()
    [finding] = check_source(text, f"{name}.py", config=ONLY)
    assert finding.fixes == [] and "is read in the loop" in finding.no_fix_reason
    assert "preallocate" in finding.message
    assert fix_source(text, config=ONLY, unsafe_fixes=True).text == text
