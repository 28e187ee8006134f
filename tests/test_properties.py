"""Property tests (hypothesis) for the value grammars of the rules language.

- Durations: every string of the grammar parses, matches timing.DURATION_PATTERN
  (the expression the JSON Schemas carry) and round-trips through str(); any
  other text either parses or raises ValueError, and the pattern and the parser
  agree on what is a duration.
- Windows: HH:MM-HH:MM with start < end parses and round-trips; nothing else does.
- Criteria: random all/any/not trees over a field table with every FieldType
  parse to the same shape when every operator fits its field; a leaf with an
  operator that does not fit raises CriteriaError("criteria-operator") at that leaf.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from outreach.rules import criteria, timing
from outreach.rules.criteria import OPS_BY_TYPE, All, AnyOf, CriteriaError, FieldType, Leaf, Not, Op

pytestmark = pytest.mark.unit

# Modest example counts: the whole file runs in a few seconds.
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TREES = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- durations -------------------------------------------------------------------------

SECONDS_PER_UNIT = {
    "s": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
BUSINESS_UNITS = ("business day", "business days")
ALL_UNITS = (*SECONDS_PER_UNIT, *BUSINESS_UNITS)

amounts = st.integers(min_value=0, max_value=999_999)
separators = st.sampled_from(["", " "])


@st.composite
def grammar_durations(draw: st.DrawFn, units: tuple[str, ...] = ALL_UNITS) -> tuple[str, timing.Duration]:
    """A duration string from the grammar and the Duration it means."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from(["0", "immediately"])), timing.Duration()
    amount, sep, unit = draw(amounts), draw(separators), draw(st.sampled_from(units))
    if unit in BUSINESS_UNITS:
        expected = timing.Duration(business_days=amount)
    else:
        expected = timing.Duration(seconds=amount * SECONDS_PER_UNIT[unit])
    return f"{amount}{sep}{unit}", expected


def _parses(parse: Callable[[object], object], value: object) -> bool:
    """True when `parse` accepts the value, False on ValueError; any other exception propagates."""
    try:
        parse(value)
    except ValueError:
        return False
    return True


# Text close to the grammar finds more disagreements than st.text() alone:
# valid strings with stray whitespace, digits or letters around them, and
# strings over the grammar's own alphabet.
_near_alphabet = "0123456789 smhdwecondiutayrkbsSD\t\n\u00a0\u2003"
near_durations = st.one_of(
    st.text(alphabet=_near_alphabet, max_size=24),
    st.builds(
        lambda pre, d, post: pre + d[0] + post,
        st.text(alphabet=" \t\n0123456789s\u2003", max_size=3),
        grammar_durations(),
        st.text(alphabet=" \t\n0123456789s\u2003", max_size=3),
    ),
    st.builds(lambda n, u: f"{n}{u}", st.integers(0, 10**9), st.sampled_from([" ", "  ", "", "\t"])).map(
        lambda s: s + "days"
    ),
)
arbitrary_text = st.one_of(st.text(max_size=40), near_durations)


@FAST
@given(grammar_durations())
def test_every_grammar_duration_parses_matches_the_pattern_and_round_trips(case: tuple[str, timing.Duration]) -> None:
    text, expected = case
    assert re.match(timing.DURATION_PATTERN, text), f"{text!r} does not match DURATION_PATTERN"
    d = timing.parse_duration(text)
    assert d == expected
    assert timing.parse_duration(str(d)) == d
    # the canonical form is itself in the grammar, so the schema accepts what str() writes
    assert re.match(timing.DURATION_PATTERN, str(d)), f"str({d!r}) = {str(d)!r} does not match DURATION_PATTERN"


@FAST
@given(st.one_of(arbitrary_text, st.integers(), st.floats(), st.booleans(), st.none(), st.lists(st.integers())))
def test_any_value_parses_as_a_duration_or_raises_value_error(value: object) -> None:
    _parses(timing.parse_duration, value)  # anything but ValueError fails the test


@FAST
@given(arbitrary_text)
# Found while writing these tests (see the report): the parser strips whitespace and
# takes any number of digits and spaces, DURATION_PATTERN (and so the schema) does not.
@example(" 0")
@example("3  days")
@example("1234567s")
def test_the_pattern_and_the_parser_agree_on_text(text: str) -> None:
    in_pattern = re.match(timing.DURATION_PATTERN, text) is not None
    parses = _parses(timing.parse_duration, text)
    assert in_pattern == parses, (
        f"{text!r}: DURATION_PATTERN {'matches' if in_pattern else 'rejects'} it, "
        f"parse_duration {'accepts' if parses else 'rejects'} it"
    )


# --- windows ---------------------------------------------------------------------------


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def valid_windows(draw: st.DrawFn) -> tuple[str, int, int]:
    start = draw(st.integers(0, 1439))
    end = draw(st.integers(start + 1, 1440))
    return f"{_hhmm(start)}-{_hhmm(end)}", start, end


# The grammar, strictly: two-digit hours 00-23 (24:00 only as the end), minutes 00-59, ASCII only.
_STRICT_WINDOW = re.compile(r"((?:[01][0-9]|2[0-3]):[0-5][0-9])-((?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00)", re.ASCII)


def _is_valid_window(text: str) -> bool:
    m = _STRICT_WINDOW.fullmatch(text)
    if not m:
        return False
    start, end = (int(x[:2]) * 60 + int(x[3:]) for x in m.groups())
    return start < end


@FAST
@given(valid_windows())
def test_a_valid_window_parses_and_round_trips(case: tuple[str, int, int]) -> None:
    text, start, end = case
    w = timing.parse_window(text)
    assert (w.start.hour * 60 + w.start.minute, w.end_minutes) == (start, end)
    assert str(w) == text
    assert timing.parse_window(str(w)) == w


@FAST
@given(st.integers(0, 1439), st.integers(0, 1439))
def test_a_window_that_does_not_end_after_it_starts_is_refused(a: int, b: int) -> None:
    start, end = max(a, b), min(a, b)
    with pytest.raises(ValueError):
        timing.parse_window(f"{_hhmm(start)}-{_hhmm(end)}")


_window_noise = st.one_of(
    st.text(max_size=20),
    st.text(alphabet="0123456789:- \n", max_size=13),
    st.builds(
        lambda pre, w, post: pre + w[0] + post,
        st.text(alphabet=" \t\n0:-", max_size=2),
        valid_windows(),
        st.text(alphabet=" \t\n0:-", max_size=2),
    ),
)


@FAST
@given(st.one_of(_window_noise, st.integers(), st.none(), st.booleans()))
# Found while writing these tests (see the report): `$` in WINDOW_PATTERN matches before a
# final newline, so a block scalar `send_window: |` with 08:00-18:00 is accepted.
@example("08:00-18:00\n")
def test_anything_but_a_valid_window_raises_value_error(value: object) -> None:
    if isinstance(value, str) and _is_valid_window(value):
        assert str(timing.parse_window(value)) == value
        return
    with pytest.raises(ValueError):
        timing.parse_window(value)


# --- criteria --------------------------------------------------------------------------

# Built-in fields plus one declared field of every type.
FIELDS: dict[str, FieldType] = {
    **criteria.BUILTIN_FIELDS,
    "first_name": FieldType.STRING,
    "score": FieldType.NUMBER,
    "purchased": FieldType.BOOLEAN,
    "signed_up_at": FieldType.DATETIME,
}
FIELDS_BY_TYPE = {t: sorted(f for f, ft in FIELDS.items() if ft is t) for t in FieldType}
assert all(FIELDS_BY_TYPE.values()), "the field table needs a field of every type"

_offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))


@st.composite
def instants(draw: st.DrawFn) -> tuple[str, dt.datetime]:
    """An RFC 3339 text (as rules write it) and the datetime it means."""
    value = draw(st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=_offsets))
    timespec = draw(st.sampled_from(["minutes", "seconds", "microseconds"]))
    text = value.isoformat(timespec=timespec)
    if value.utcoffset() == dt.timedelta(0) and draw(st.booleans()):
        text = text.removesuffix("+00:00") + "Z"
    if timespec == "minutes":
        value = value.replace(second=0, microsecond=0)
    elif timespec == "seconds":
        value = value.replace(microsecond=0)
    return text, value


def _scalar(ftype: FieldType) -> st.SearchStrategy[tuple[Any, Any]]:
    """(raw value as YAML gives it, the value parse() should produce) for one field type."""
    if ftype is FieldType.STRING:
        return st.text(max_size=12).map(lambda s: (s, s))
    if ftype is FieldType.NUMBER:
        return st.one_of(st.integers(-(10**9), 10**9), st.floats(allow_nan=False, allow_infinity=False)).map(
            lambda n: (n, n)
        )
    if ftype is FieldType.BOOLEAN:
        return st.booleans().map(lambda b: (b, b))
    return instants()


def _value_for(op: Op, ftype: FieldType) -> st.SearchStrategy[tuple[Any, Any]]:
    if op is Op.EXISTS:
        return st.booleans().map(lambda b: (b, b))
    if op in (Op.OLDER_THAN, Op.NEWER_THAN):
        plain = grammar_durations(tuple(SECONDS_PER_UNIT))
        return st.one_of(plain, st.just((0, timing.Duration())))
    if op in (Op.IN, Op.NOT_IN):
        return st.lists(_scalar(ftype), min_size=1, max_size=4).map(
            lambda items: ([raw for raw, _ in items], tuple(v for _, v in items))
        )
    return _scalar(ftype)


@st.composite
def good_leaves(draw: st.DrawFn) -> tuple[dict[str, Any], criteria.Criteria]:
    ftype = draw(st.sampled_from(list(FieldType)))
    field = draw(st.sampled_from(FIELDS_BY_TYPE[ftype]))
    op = draw(st.sampled_from(sorted(OPS_BY_TYPE[ftype])))
    raw, value = draw(_value_for(op, ftype))
    return {"field": field, op.value: raw}, Leaf(field, op, value)


def _all(children: list[tuple[dict[str, Any], criteria.Criteria]]) -> tuple[dict[str, Any], criteria.Criteria]:
    return {"all": [d for d, _ in children]}, All(tuple(c for _, c in children))


def _any(children: list[tuple[dict[str, Any], criteria.Criteria]]) -> tuple[dict[str, Any], criteria.Criteria]:
    return {"any": [d for d, _ in children]}, AnyOf(tuple(c for _, c in children))


def _not(child: tuple[dict[str, Any], criteria.Criteria]) -> tuple[dict[str, Any], criteria.Criteria]:
    return {"not": child[0]}, Not(child[1])


good_trees = st.recursive(
    good_leaves(),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(_all),
        st.lists(children, min_size=1, max_size=3).map(_any),
        children.map(_not),
    ),
    max_leaves=8,
)

base_paths = st.sampled_from([(), ("where",), ("enroll_when",), ("follow_ups", 1, "except"), ("to", "where")])


def _leaf_paths(data: dict[str, Any], path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    if "all" in data or "any" in data:
        key = "all" if "all" in data else "any"
        return [p for i, x in enumerate(data[key]) for p in _leaf_paths(x, (*path, key, i))]
    if "not" in data:
        return _leaf_paths(data["not"], (*path, "not"))
    return [path]


def _replace(data: Any, path: tuple[str | int, ...], new: dict[str, Any]) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(data, list):
        assert isinstance(head, int)
        return [_replace(x, rest, new) if i == head else x for i, x in enumerate(data)]
    return {k: (_replace(v, rest, new) if k == head else v) for k, v in data.items()}


@TREES
@given(good_trees, base_paths)
def test_a_well_typed_tree_parses_to_the_same_shape(case: tuple[dict[str, Any], criteria.Criteria], base: Any) -> None:
    data, expected = case
    assert criteria.parse(data, FIELDS, base) == expected


@st.composite
def bad_leaves(draw: st.DrawFn) -> tuple[dict[str, Any], Op]:
    """A leaf whose operator does not fit its field's type (its value fits the operator elsewhere)."""
    ftype = draw(st.sampled_from(list(FieldType)))
    field = draw(st.sampled_from(FIELDS_BY_TYPE[ftype]))
    op = draw(st.sampled_from(sorted(set(Op) - OPS_BY_TYPE[ftype])))
    other = next(t for t in FieldType if op in OPS_BY_TYPE[t])
    raw, _ = draw(_value_for(op, other))
    return {"field": field, op.value: raw}, op


@TREES
@given(good_trees, bad_leaves(), st.data(), base_paths)
def test_an_operator_that_does_not_fit_the_field_is_refused_at_its_leaf(
    case: tuple[dict[str, Any], criteria.Criteria], bad: tuple[dict[str, Any], Op], data: st.DataObject, base: Any
) -> None:
    tree, _ = case
    leaf_path = data.draw(st.sampled_from(_leaf_paths(tree)), label="leaf replaced")
    bad_leaf, op = bad
    broken = _replace(tree, leaf_path, bad_leaf)
    with pytest.raises(CriteriaError) as info:
        criteria.parse(broken, FIELDS, base)
    assert info.value.code == "criteria-operator"
    # the path of the leaf, down to its operator key (so the diagnostic lands on that line)
    assert info.value.path == (*base, *leaf_path, op.value)


def test_every_field_type_has_an_operator_that_does_not_fit() -> None:
    # otherwise bad_leaves() could not be drawn for that type
    for ftype in FieldType:
        assert set(Op) - OPS_BY_TYPE[ftype], ftype
