"""The server's buffers and positions (alloc_lint/lsp/text.py) against the
reference in tests/lsp_reference.py, on random texts with every kind of line
end, form feeds, U+2028, and characters of 1 to 4 UTF-8 bytes."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("lsprotocol")

from lsp_reference import apply, offset  # noqa: E402  tests/lsp_reference.py
from lsprotocol import types as lsp  # noqa: E402

from alloc_lint.lsp.text import Buffer, apply_change  # noqa: E402

TEXTS = st.text(alphabet="ab é😀\r\n\x0c\u2028", max_size=40)
ENCODINGS = st.sampled_from(["utf-8", "utf-16", "utf-32"])


@settings(max_examples=300, deadline=None)
@given(TEXTS, st.integers(0, 12), st.integers(0, 20), ENCODINGS)
def test_lsp_positions_to_offsets(text, line, character, encoding):
    assert Buffer(text, encoding).offset(line, character) == offset(text, lsp.Position(line, character), encoding)


@settings(max_examples=300, deadline=None)
@given(TEXTS, st.data(), ENCODINGS)
def test_offsets_to_lsp_positions_and_back(text, data, encoding):
    buffer = Buffer(text, encoding)
    # Any offset that does not split a \r\n pair.
    at = data.draw(st.sampled_from([i for i in range(len(text) + 1)
                                    if not (0 < i < len(text) and text[i - 1:i + 1] == "\r\n")]))
    line, character = buffer.position(at)
    assert offset(text, lsp.Position(line, character), encoding) == at


@settings(max_examples=200, deadline=None)
@given(TEXTS, st.integers(0, 12), st.integers(0, 20), st.integers(0, 12), st.integers(0, 20), TEXTS, ENCODINGS)
def test_incremental_change_matches_the_reference(text, l1, c1, l2, c2, new, encoding):
    start, end = sorted([(l1, c1), (l2, c2)], key=lambda p: offset(text, lsp.Position(*p), encoding))
    edit = lsp.TextEdit(range=lsp.Range(lsp.Position(*start), lsp.Position(*end)), new_text=new)
    assert apply_change(text, start, end, new, encoding) == apply(text, [edit], encoding)
