"""Record import files: CSV and JSON Lines read into typed rows, or the problems of each row.

The pure part of `outreach records import`: no database, no clock, no output. Files are
streamed line by line, so memory stays bounded however many rows they hold (only the ids
seen so far are kept, to find duplicates).
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import datetime as dt
import functools
import io
import itertools
import json
import math
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from outreach.rules import diagnostics, timing
from outreach.rules.criteria import FieldType

EXTENSIONS = (".csv", ".jsonl", ".ndjson")

# The store keeps integers as 64-bit; a larger one would fail there, far from its line.
_MAX_INT = 2**63 - 1
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME_RE = re.compile(timing.DATETIME_PATTERN)
_BOOLEANS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
_SPECIAL = ("id", "type", "email")


class ImportFileError(Exception):
    """The file as a whole cannot be imported (its kind, encoding, header or emptiness)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclasses.dataclass(frozen=True)
class Row:
    """A record as the file gives it, checked and typed."""

    line: int  # where the row starts, 1-based; a CSV header is line 1
    id: str | None
    type: str
    email: str | None  # normalized address, without a display name
    fields: Mapping[str, object]  # every other field present, typed; empty values are absent


@dataclasses.dataclass(frozen=True)
class RowError:
    """Why the row starting on `line` cannot be imported (several problems are joined by `; `)."""

    line: int
    message: str


def read_rows(
    path: str,
    *,
    fields: Mapping[str, FieldType],
    modules: Sequence[str],
    default_type: str | None,
    owners: Collection[str] | None = None,
) -> Iterator[Row | RowError]:
    """Stream the rows of a `.csv`, `.jsonl` or `.ndjson` file, each a Row or a RowError.

    `fields` are the record fields with their types (Settings.fields), `modules` the record
    types (Settings.all_modules); `default_type` is the type of rows without one; `owners`,
    when given, are the user ids an owner may be. Raises ImportFileError for the file as a
    whole: at once for an unknown extension or default type; while iterating for an empty
    file, a missing header, text that is not UTF-8 or CSV it cannot parse, so rows before
    such a line may already have been yielded.
    """
    ext = os.path.splitext(path)[1].lower()
    if ext not in EXTENSIONS:
        raise ImportFileError(
            f"cannot tell the format of {os.path.basename(path)!r} from its extension: "
            "name it .csv (a header row, then one record a row) or .jsonl / .ndjson (one JSON object a line)"
        )
    if default_type is not None and default_type not in modules:
        raise ImportFileError(f"the default type {default_type!r} is not a module ({', '.join(modules)})")
    checker = _Checker(fields, modules, default_type, owners)
    return _csv_rows(path, checker) if ext == ".csv" else _jsonl_rows(path, checker)


def json_rows(
    objects: Iterable[object],
    *,
    fields: Mapping[str, FieldType],
    modules: Sequence[str],
    owners: Collection[str] | None = None,
) -> Iterator[Row | RowError]:
    """The checks of a JSON Lines import on objects already parsed (the ingest API's records): each a Row or a
    RowError whose `line` is the object's index, from 0. Every object needs its type; a duplicate id names the
    index of the first."""
    checker = _Checker(fields, modules, None, owners, place="index", type_hint="")
    convert = checker.json_converters()
    for index, data in enumerate(objects):
        if not isinstance(data, dict):
            yield RowError(index, f"expected a JSON object ({{...}}), got {describe(data)}")
            continue
        yield _json_row(checker, convert, index, dict(data))


def convert_text(ftype: FieldType, text: str) -> object:
    """Text as a CSV cell or `FIELD=VALUE` gives it, as a value of the field's type; raises ValueError.

    Numbers are int when they parse as one, else float; booleans true/false/yes/no/1/0 in any
    case; datetimes RFC 3339 with an offset, or a bare date (midnight UTC), as aware UTC.
    """
    convert = _TEXT_CONVERTERS[ftype]
    return text if convert is None else convert(text)


# --- CSV ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Columns:
    """Where each field sits in a CSV row and how its text becomes a value, worked out once from the header."""

    width: int
    id: int | None
    type: int | None
    email: int | None
    text: tuple[tuple[int, str], ...]  # plain text fields
    converted: tuple[tuple[int, str, Callable[[str], object]], ...]


def _csv_rows(path: str, checker: _Checker) -> Iterator[Row | RowError]:
    with _open(path) as f:
        first = f.readline()
        if first.startswith(codecs.BOM_UTF8):
            first = first[len(codecs.BOM_UTF8) :]
        if not first:
            raise ImportFileError("the file is empty: a CSV file starts with a header row naming its columns")
        # Decoding line by line (not through a text stream) tells which line is not UTF-8.
        lines = itertools.chain((_decode(first, 1),), map(bytes.decode, f))
        reader = csv.reader(lines, strict=True)  # an unclosed quote is an error, not the rest of the file
        header = _next_csv(reader, 1)
        if not header or not any(header):
            raise ImportFileError(
                "missing header: line 1 is blank; the first line must name the columns, e.g. `id,type,email`", 1
            )
        columns = checker.columns(header)
        if isinstance(columns, RowError):
            yield columns
            return
        width, id_i, type_i, email_i = columns.width, columns.id, columns.type, columns.email
        text, converted = columns.text, columns.converted
        finish = checker.finish
        next_line = reader.line_num + 1
        while (cells := _next_csv(reader, next_line)) is not None:
            line, next_line = next_line, reader.line_num + 1
            if not any(cells):
                continue  # a blank line, or a row of empty cells as spreadsheets write them
            if len(cells) != width:
                yield RowError(
                    line,
                    f"the row has {len(cells)} values but the header names {width} columns "
                    "(a value with a comma or a line break needs double quotes)",
                )
                continue
            values: dict[str, object] = {}
            problems: list[str] = []
            for i, name in text:
                if value := cells[i]:
                    values[name] = value
            for i, name, convert in converted:
                if value := cells[i]:
                    try:
                        values[name] = convert(value)
                    except ValueError as exc:
                        problems.append(f"{name}: {exc}")
            yield finish(
                line,
                cells[id_i] if id_i is not None else "",
                cells[type_i] if type_i is not None else "",
                cells[email_i] if email_i is not None else "",
                values,
                problems,
            )


def _next_csv(reader: Any, start: int) -> list[str] | None:
    """The next CSV row (starting on line `start`), None at the end; a broken file is an ImportFileError."""
    try:
        row: list[str] = next(reader)
    except StopIteration:
        return None
    except UnicodeDecodeError as exc:
        raise _not_utf8(reader.line_num + 1, exc) from None  # the line that failed was not counted
    except csv.Error as exc:
        line, reason = reader.line_num, str(exc)
        if reason == "unexpected end of data":
            line, reason = start, "a value opens a double quote that is never closed"
        elif reason.startswith("field larger than field limit"):
            line, reason = (
                start,
                f"a value is longer than {csv.field_size_limit()} characters (is a double quote left open?)",
            )
        elif reason.startswith("new-line character"):
            reason = "a line ends in a bare carriage return: save the file with LF or CRLF line ends"
        elif "expected after" in reason:
            reason += " (a quoted value ends at its closing quote; a quote inside a value is written twice)"
        raise ImportFileError(f"line {line}: the CSV cannot be read: {reason}", line) from None
    return row


# --- JSON Lines -----------------------------------------------------------------------------------


def _jsonl_rows(path: str, checker: _Checker) -> Iterator[Row | RowError]:
    convert = checker.json_converters()
    seen_any = False
    with _open(path) as f:
        for line, raw in enumerate(f, 1):
            if line == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            if raw.isspace() or not raw:
                continue
            seen_any = True
            text = _decode(raw, line)
            try:
                data = json.loads(text)
            except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
                reason = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
                yield RowError(line, f"not a JSON object: {reason}")
                continue
            if not isinstance(data, dict):
                yield RowError(line, f"expected a JSON object ({{...}}), got {describe(data)}")
                continue
            yield _json_row(checker, convert, line, data)
    if not seen_any:
        raise ImportFileError("the file is empty: JSON Lines files hold one JSON object a line")


def _json_row(
    checker: _Checker, convert: Mapping[str, Callable[[Any], object]], line: int, data: dict[str, Any]
) -> Row | RowError:
    """One JSON object's record (`data` is consumed)."""
    problems: list[str] = []
    id_ = _json_text(data.pop("id", None), "id", problems)
    type_ = _json_text(data.pop("type", None), "type", problems)
    email = _json_text(data.pop("email", None), "email", problems)
    values: dict[str, object] = {}
    unknown: list[str] = []
    for name, value in data.items():
        if value is None or value == "":
            continue
        conv = convert.get(name)
        if conv is None:
            unknown.append(name)
            continue
        try:
            values[name] = conv(value)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    if unknown:
        problems.extend(checker.unknown_field(name) for name in unknown)
    return checker.finish(line, id_, type_, email, values, problems)


def _json_text(value: object, name: str, problems: list[str]) -> str:
    """id, type and email: text, or '' when absent or wrong (then with a problem)."""
    if value is None or isinstance(value, str):
        return value or ""
    problems.append(f"{name}: expected text, got {describe(value)}")
    return ""


# --- Checks shared by both formats ---------------------------------------------------------------


class _Checker:
    """Per-import state and checks: known fields, modules, owners and the ids seen so far."""

    def __init__(
        self,
        fields: Mapping[str, FieldType],
        modules: Sequence[str],
        default_type: str | None,
        owners: Collection[str] | None,
        *,
        place: str = "line",
        type_hint: str = " or import with --type MODULE",
    ) -> None:
        self.fields = fields
        self.place = place  # what a row's number is: a file's line, a list's index
        self.type_hint = type_hint
        self.modules = frozenset(modules)
        self.modules_text = ", ".join(modules)
        self.default_type = default_type
        self.owners = frozenset(owners) if owners is not None else None
        self.ids: dict[str, int] = {}
        # The same wrong name tends to repeat on every row; the hint is worked out once.
        self.field_hint = functools.lru_cache(maxsize=256)(lambda name: diagnostics.did_you_mean(name, self.fields))
        self.owner_hint = functools.lru_cache(maxsize=256)(lambda name: diagnostics.did_you_mean(name, owners or ()))

    def unknown_field(self, name: str) -> str:
        return f"unknown field {name!r}{self.field_hint(name)}: declare it in Settings.record_fields"

    def columns(self, header: list[str]) -> _Columns | RowError:
        """The column plan of a CSV header, or one RowError (line 1) naming every bad column."""
        names = [cell.strip() for cell in header]
        known = [n for n in names if n in self.fields or n in _SPECIAL]
        if not known:
            shown = ", ".join(repr(n[:40]) for n in names[:4]) + (", ..." if len(names) > 4 else "")
            hint = ""
            if len(names) == 1 and (";" in names[0] or "\t" in names[0]):
                hint = "; columns are separated by commas, not semicolons or tabs"
            raise ImportFileError(
                f"missing header: line 1 must name the columns, e.g. `id,type,email`, but names no known field ({shown}){hint}",
                1,
            )
        problems: list[str] = []
        unknown: list[str] = []
        first_at: dict[str, int] = {}
        for col, name in enumerate(names, 1):
            if not name:
                problems.append(f"column {col} of the header has no name")
            elif name in first_at:
                problems.append(f"column {name!r} appears twice (columns {first_at[name]} and {col})")
            else:
                first_at[name] = col
                if name not in self.fields and name not in _SPECIAL:
                    hint = self.field_hint(name)
                    unknown.append(f"{name!r} ({hint[2:]})" if hint else repr(name))
        if unknown:
            s = "s" if len(unknown) > 1 else ""
            problems.insert(
                0, f"unknown field{s} {', '.join(unknown)}: declare {'them' if s else 'it'} in Settings.record_fields"
            )
        if problems:
            return RowError(1, "; ".join(problems) + "; the file was not imported")
        text: list[tuple[int, str]] = []
        converted: list[tuple[int, str, Callable[[str], object]]] = []
        for i, name in enumerate(names):
            if name in _SPECIAL:
                continue
            convert = self.converter(name, _TEXT_CONVERTERS[self.fields[name]])
            if convert is None:
                text.append((i, name))
            else:
                converted.append((i, name, convert))
        return _Columns(
            width=len(names),
            id=first_at["id"] - 1 if "id" in first_at else None,
            type=first_at["type"] - 1 if "type" in first_at else None,
            email=first_at["email"] - 1 if "email" in first_at else None,
            text=tuple(text),
            converted=tuple(converted),
        )

    def json_converters(self) -> dict[str, Callable[[Any], object]]:
        out: dict[str, Callable[[Any], object]] = {}
        for name, ftype in self.fields.items():
            if name not in _SPECIAL:
                out[name] = self.converter(name, _JSON_CONVERTERS[ftype]) or _json_string
        return out

    def converter(self, name: str, convert: Callable[[Any], object] | None) -> Callable[[Any], object] | None:
        """The field's converter with the checks of owner and timezone; None for text taken as it is."""
        if name == "owner" and self.owners is not None:
            return _then(convert, self.check_owner)
        if name == "timezone":
            return _then(convert, _check_zone)
        return convert

    def check_owner(self, value: object) -> object:
        assert self.owners is not None
        if value not in self.owners:
            raise ValueError(f"{value!r} is not a user{self.owner_hint(value)}")
        return value

    def finish(
        self, line: int, id_: str, type_: str, email: str, fields: dict[str, object], problems: list[str]
    ) -> Row | RowError:
        """The Row, or a RowError with the row's problems: those of id, type and email first."""
        own: list[str] = []
        if id_:
            first = self.ids.setdefault(id_, line)
            if first != line:
                own.append(f"duplicate id {id_!r} (first on {self.place} {first})")
        if not type_:
            if self.default_type is None:
                own.append(f"no type: give the row a type ({self.modules_text}){self.type_hint}")
            type_ = self.default_type or ""
        elif type_ not in self.modules:
            own.append(
                f"type {type_!r} is not a module ({self.modules_text}){diagnostics.did_you_mean(type_, self.modules)}"
            )
        normalized: str | None = None
        if email:
            try:
                normalized = normalized_email(email)
            except ValueError as exc:
                own.append(str(exc))
        if own or problems:
            return RowError(line, "; ".join(own + problems))
        return Row(line, id_ or None, type_, normalized, fields)


# A plain ASCII address: dot-atom local part, LDH labels, an alphabetic top-level domain.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
_SPECIAL_USE = ("arpa", "invalid", "local", "localhost", "onion", "test")


class InvalidValue(ValueError):
    """A value a record cannot take: the message names the field and says why."""


def checked_fields(values: Mapping[str, object], *, owners: Collection[str] | None = None) -> dict[str, object]:
    """Values set on a record outside an import (`records set`, a RuleTest's `set`), with an import row's checks:
    the address normalized as `records import` keeps it (an empty one clears it), the time zone a known one, and
    the owner a user when `owners` are given. InvalidValue names the first bad field."""
    checked = dict(values)
    for name, value in values.items():
        if value is None:
            continue
        try:
            if name == "email":
                if not isinstance(value, str):
                    raise ValueError(f"expected an address, got {describe(value)}")
                checked[name] = normalized_email(value) if value.strip() else None
            elif name == "timezone":
                _check_zone(value)
            elif name == "owner" and owners is not None and value not in owners:
                raise ValueError(f"{value!r} is not a user{diagnostics.did_you_mean(str(value), owners)}")
        except ValueError as exc:
            raise InvalidValue(f"{name}: {exc}") from None
    return checked


def normalized_email(text: str) -> str:
    """An address as `records import` keeps it: without a display name, its domain lower-cased (the check of an
    import row's email, and of `outreach suppressions add`). ValueError says why `text` is not one."""
    found = plain_email(text)
    if found is not None:
        return found
    import email_validator  # here, not at the top: only an address of an unusual form pays for loading it

    try:
        return email_validator.validate_email(text, check_deliverability=False, allow_display_name=True).normalized
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"invalid email {text!r}: {str(exc).rstrip('.')}") from None


def plain_email(text: str) -> str | None:
    """The normalized form of an obviously valid plain ASCII address, else None (ask email-validator).

    email-validator costs some 30 microseconds an address, most of an import of
    a million rows; nearly every address in a CRM export is of this plain form,
    for which its answer is known: valid, with the domain lower-cased. Anything
    else (quotes, display names, Unicode, punycode, special-use domains,
    overlong parts) goes to email-validator. A property test checks that both
    agree on every address this accepts.
    """
    match = _PLAIN_EMAIL.fullmatch(text)
    if match is None or len(text) > 254 or text.index("@") > 64:
        return None
    domain = match.group(1).lower()
    if "--" in domain or len(domain) > 253 or domain.rsplit(".", 1)[-1] in _SPECIAL_USE:
        return None
    return text[: text.index("@") + 1] + domain


def _then(convert: Callable[[Any], object] | None, check: Callable[[Any], object]) -> Callable[[Any], object]:
    if convert is None:
        return check
    return lambda value: check(convert(value))


def _check_zone(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError(f"expected a time zone name, got {describe(value)}")
    try:
        timing.zone(value)
    except OSError:  # a name too long for a file name
        raise ValueError(f"unknown time zone {value[:60]!r}: use an IANA name such as Europe/Berlin") from None
    return value


# --- Values --------------------------------------------------------------------------------------


def _text_number(text: str) -> object:
    try:
        integer = int(text)
    except ValueError:
        pass
    else:
        return _in_range(integer)
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"expected a number, got the text {text!r}") from None
    return _finite(number)


def _text_boolean(text: str) -> object:
    try:
        return _BOOLEANS[text.strip().lower()]
    except KeyError:
        raise ValueError(f"expected true or false (or yes/no, 1/0), got the text {text!r}") from None


# Imports repeat dates and times a lot; datetimes are immutable, so rows can share them.
@functools.lru_cache(maxsize=4096)
def _text_datetime(text: str) -> object:
    """RFC 3339 with an offset, as aware UTC; a bare date YYYY-MM-DD is midnight UTC."""
    text = text.strip()
    if len(text) == 10 and _DATE_RE.fullmatch(text):
        try:
            day = dt.date.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a valid date: {exc}") from None
        return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    try:
        return timing.parse_instant(text).astimezone(dt.UTC)
    except ValueError:
        if _DATETIME_RE.fullmatch(text):
            raise  # the right form, but no such date or time
        raise ValueError(
            "expected a date and time with a UTC offset (2027-03-02T10:00:00Z, 2027-03-02 10:00+01:00) "
            f"or a date (2027-03-02), got the text {text!r}"
        ) from None
    except OverflowError:
        raise ValueError(f"{text!r} is out of range in UTC") from None


def _json_string(value: Any) -> object:
    if isinstance(value, str):
        return value
    raise ValueError(f"expected text, got {describe(value)}")


def _json_number(value: Any) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {describe(value)}")
    return _in_range(value) if isinstance(value, int) else _finite(value)


def _json_boolean(value: Any) -> object:
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false, got {describe(value)}")


def _json_datetime(value: Any) -> object:
    if isinstance(value, str):
        return _text_datetime(value)
    raise ValueError(f"expected a date and time as text (2027-03-02T10:00:00Z or 2027-03-02), got {describe(value)}")


def _in_range(number: int) -> int:
    if -_MAX_INT <= number <= _MAX_INT:
        return number
    raise ValueError(f"the number {number} is too large: integers go up to {_MAX_INT}")


def _finite(number: float) -> float:
    if math.isfinite(number):
        return number
    raise ValueError(f"expected a finite number, got {number}")


# None: CSV text is the value as it is.
_TEXT_CONVERTERS: Mapping[FieldType, Callable[[str], object] | None] = {
    FieldType.STRING: None,
    FieldType.NUMBER: _text_number,
    FieldType.BOOLEAN: _text_boolean,
    FieldType.DATETIME: _text_datetime,
}
_JSON_CONVERTERS: Mapping[FieldType, Callable[[Any], object]] = {
    FieldType.STRING: _json_string,
    FieldType.NUMBER: _json_number,
    FieldType.BOOLEAN: _json_boolean,
    FieldType.DATETIME: _json_datetime,
}


def describe(value: object) -> str:
    """A JSON value as an error message names it: `the text 'x'`, `the number 3`, `a list` ..."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"the text {value[:60]!r}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else f"a {type(value).__name__}"


# --- Files ----------------------------------------------------------------------------------------


def _open(path: str) -> io.BufferedReader:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from None


def _decode(raw: bytes, line: int) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise _not_utf8(line, exc) from None


def _not_utf8(line: int, exc: UnicodeDecodeError) -> ImportFileError:
    bad = exc.object[exc.start : exc.start + 1].hex()
    return ImportFileError(
        f"line {line} is not UTF-8 text (byte 0x{bad} at byte {exc.start + 1} of the line): save the file as UTF-8",
        line,
    )
