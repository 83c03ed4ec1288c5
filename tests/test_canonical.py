"""RFC 8785 canonical bytes (collector.evidence.canonical): the examples the RFC and docs/evidence-format.md
give, and properties against an independent spelling of the same rule."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.evidence.canonical import MAX_INTEGER, CanonicalError, jcs


def test_member_order_is_by_utf16_code_units_not_code_points():
    # U+1F600 is the surrogate pair D83D DE00, which sorts before U+FB33 in UTF-16 though after it by code point.
    document = {"\ufb33": 1, "\U0001f600": 2, "a": 3, "": 4}
    assert jcs(document) == '{"":4,"a":3,"\U0001f600":2,"\ufb33":1}'.encode()


def test_strings_escape_only_what_rfc_8785_escapes():
    assert jcs("\"\\\b\t\n\f\r\x00\x1f\x7f é 张伟 \u2028") == (
        '"\\"\\\\\\b\\t\\n\\f\\r\\u0000\\u001f\x7f é 张伟 \u2028"'.encode())


def test_rfc_8785_example_without_numbers():
    document = {"literals": [None, True, False], "string": "€$\u000f\u000aA'\u0042\u0022\u005c\\\"/"}
    assert jcs(document) == b'{"literals":[null,true,false],"string":"\xe2\x82\xac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'


@pytest.mark.parametrize("value", [1.0, 16.5, float("nan"), MAX_INTEGER + 1, -MAX_INTEGER - 1, "\ud800", {1: "a"},
                                   b"bytes", {"a": {"b": [0.5]}}])
def test_refuses_what_has_no_canonical_form(value):
    with pytest.raises(CanonicalError):
        jcs(value)


def test_integers_at_the_i_json_limits():
    assert jcs([MAX_INTEGER, -MAX_INTEGER, 0, -0]) == b"[9007199254740991,-9007199254740991,0,0]"


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-MAX_INTEGER, MAX_INTEGER) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4), max_leaves=20)


@given(_values)
def test_reads_back_as_the_same_value_and_spells_strings_as_python_does(value):
    data = jcs(value)
    assert json.loads(data.decode("utf-8")) == value
    # An independent spelling: Python's compact, non-ASCII JSON escapes strings as RFC 8785 does, so with
    # the members put in UTF-16 order beforehand it must give the same bytes.
    python = json.dumps(_sorted_utf16(value), ensure_ascii=False, separators=(",", ":"))
    assert data == python.encode("utf-8")


def _sorted_utf16(value):
    if isinstance(value, dict):
        return {k: _sorted_utf16(value[k]) for k in sorted(value, key=lambda k: k.encode("utf-16-be"))}
    if isinstance(value, list):
        return [_sorted_utf16(v) for v in value]
    return value


@given(_values)
def test_the_fast_path_writes_what_the_rule_written_out_writes(value):
    """``jcs`` hands most documents to Python's C encoder; the character-by-character writer, which states
    the RFC 8785 rule itself, must give the same bytes for each of them."""
    from collector.evidence.canonical import _write

    parts: list[str] = []
    _write(value, parts, 0)
    assert "".join(parts).encode("utf-8") == jcs(value)
