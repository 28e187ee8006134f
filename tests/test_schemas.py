"""The JSON Schemas: well-formed in both drafts, committed as generated, documented,
closed, accepting the example rules, shipped in the wheel (tests/test_wheel.py); and the YAML 1.2 pin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from outreach.rules import loader, schemas
from tests.conftest import ROOT

pytestmark = pytest.mark.unit

DRAFTS = {"2020-12": jsonschema.Draft202012Validator, "07": jsonschema.Draft7Validator}
SCHEMA_DIR = ROOT / "schemas"
RULES_DIR = ROOT / "rules"

# Object schemas that deliberately accept keys they do not list: both take record
# fields, which Settings.record_fields declares, so the schema cannot name them.
OPEN_OBJECTS = {
    ("RuleTest", "/properties/records/items"),  # a test record: id, type and any record field
    ("RuleTest", "/properties/events/items/properties/set"),  # set: {record, <field>: <value>, ...}
    # apply: a whole definition of its kind, checked against that kind's schema
    ("RuleTest", "/properties/events/items/properties/apply/properties/definitions/items"),
}

_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
_SUBSCHEMA_ONE = ("additionalProperties", "items", "not", "if", "then", "else", "propertyNames", "contains")
_SUBSCHEMA_LISTS = ("oneOf", "anyOf", "allOf", "prefixItems")


def _subschemas(node: Any, pointer: str = "", *, in_if: bool = False) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(JSON pointer, schema, inside an `if`) for the schema and every schema below it."""
    if not isinstance(node, dict):
        return
    yield pointer, node, in_if
    for key in _SUBSCHEMA_MAPS:
        for name, sub in node.get(key, {}).items():
            yield from _subschemas(sub, f"{pointer}/{key}/{name}", in_if=in_if)
    for key in _SUBSCHEMA_ONE:
        yield from _subschemas(node.get(key), f"{pointer}/{key}", in_if=in_if or key == "if")
    for key in _SUBSCHEMA_LISTS:
        for i, sub in enumerate(node.get(key, [])):
            yield from _subschemas(sub, f"{pointer}/{key}/{i}", in_if=in_if)


def _resolve(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local $ref (#/$defs/x or #/definitions/x) to the schema it names."""
    seen = 0
    while "$ref" in node and "description" not in node:
        assert node["$ref"].startswith("#/"), node["$ref"]
        target: Any = root
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
        seen += 1
        assert seen < 20, "a $ref cycle"
    return node


def _all_schemas() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for kind in schemas.KINDS:
        for draft in DRAFTS:
            yield kind, draft, schemas.schema(kind, draft)


CASES = list(_all_schemas())
IDS = [f"{kind}-{draft}" for kind, draft, _ in CASES]


# (a) -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "draft", "schema"), CASES, ids=IDS)
def test_every_schema_is_a_valid_schema_of_its_draft(kind: str, draft: str, schema: dict[str, Any]) -> None:
    DRAFTS[draft].check_schema(schema)
    expected = schemas.DRAFT_2020_12 if draft == "2020-12" else schemas.DRAFT_07
    assert schema["$schema"] == expected


# (b) -------------------------------------------------------------------------------------


def test_the_committed_schema_files_are_the_generated_ones() -> None:
    fix = "run `outreach schema --write schemas/` and commit the result"
    generated = schemas.all_files()
    committed = {p.relative_to(SCHEMA_DIR).as_posix() for p in SCHEMA_DIR.rglob("*") if p.is_file()}
    missing = sorted(set(generated) - committed)
    extra = sorted(committed - set(generated))
    assert not missing, f"schemas/ lacks {missing}: {fix}"
    assert not extra, f"schemas/ holds files the code does not generate: {extra}: delete them, then {fix}"
    stale = sorted(rel for rel, text in generated.items() if (SCHEMA_DIR / rel).read_text(encoding="utf-8") != text)
    assert not stale, f"schemas/ is out of date ({', '.join(stale)}): {fix}"


# (c) -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "draft", "schema"), CASES, ids=IDS)
def test_every_property_has_a_description(kind: str, draft: str, schema: dict[str, Any]) -> None:
    # A property may carry its description itself or through the definition its $ref names
    # (an editor shows the resolved one; draft-07 ignores a $ref's siblings anyway).
    # The `if` of a conditional only tests a value (transport.type == smtp); it is not
    # a key an author writes and gets no hover text, so it is left out.
    undocumented = [
        f"{pointer}/properties/{name}"
        for pointer, node, in_if in _subschemas(schema)
        if not in_if
        for name, prop in node.get("properties", {}).items()
        if "description" not in _resolve(schema, prop)
    ]
    assert not undocumented, f"{kind} ({draft}): properties without a description: {undocumented}"


def test_the_description_check_sees_nested_definitions() -> None:
    pointers = {p for _, _, s in CASES for p, _, _ in _subschemas(s)}
    assert "/$defs/condition" in pointers and "/definitions/condition" in pointers
    assert "/$defs/action/properties/task" in pointers


# (d) -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "draft", "schema"), CASES, ids=IDS)
def test_object_schemas_are_closed(kind: str, draft: str, schema: dict[str, Any]) -> None:
    # An `if` names only the keys it tests; closing it would make the condition never hold.
    open_ = [
        pointer
        for pointer, node, in_if in _subschemas(schema)
        if "properties" in node and not in_if and (kind, pointer) not in OPEN_OBJECTS
        if node.get("additionalProperties") is not False
    ]
    assert not open_, f"{kind} ({draft}): object schemas without additionalProperties: false: {open_}"


def test_the_open_exceptions_exist_and_are_open() -> None:
    for kind, pointer in OPEN_OBJECTS:
        for draft in DRAFTS:
            nodes = {p: n for p, n, _ in _subschemas(schemas.schema(kind, draft))}
            assert pointer in nodes, f"{kind} {pointer} is gone: update OPEN_OBJECTS"
            assert "properties" in nodes[pointer]
            assert nodes[pointer].get("additionalProperties") is not False


# (e) -------------------------------------------------------------------------------------


def _example_documents() -> list[tuple[str, int, dict[str, Any]]]:
    files, problems = loader.find_files([str(RULES_DIR)])
    assert not problems
    out: list[tuple[str, int, dict[str, Any]]] = []
    for f in files:
        docs, problems = loader.read_file(f)
        assert not problems, problems
        out.extend((Path(f).relative_to(ROOT).as_posix(), d.index, d.data) for d in docs)
    return out


EXAMPLES = _example_documents()


def test_the_examples_cover_every_kind() -> None:
    assert {data["kind"] for _, _, data in EXAMPLES} == set(schemas.KINDS)


@pytest.mark.parametrize("draft", list(DRAFTS))
@pytest.mark.parametrize(("file", "index", "data"), EXAMPLES, ids=[f"{f}#{i}" for f, i, _ in EXAMPLES])
def test_every_example_document_validates_with_plain_jsonschema(
    file: str, index: int, data: dict[str, Any], draft: str
) -> None:
    validator = DRAFTS[draft](schemas.schema(data["kind"], draft))
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(data)]
    assert not errors, f"{file} document {index} ({draft}): {errors}"


# (f): tests/test_wheel.py


# (g) -------------------------------------------------------------------------------------


def _one(text: str) -> dict[str, Any]:
    docs, problems = loader.parse_text(text, "pin.yaml")
    assert not problems, problems
    assert len(docs) == 1
    data: dict[str, Any] = docs[0].data
    return data


def test_yaml_1_2_country_codes_stay_text() -> None:
    view = _one("kind: View\nname: nordics\nmodule: lead\nwhere: {field: country, in: [NO, SE]}\n")
    assert view["where"] == {"field": "country", "in": ["NO", "SE"]}
    assert all(type(v) is str for v in view["where"]["in"])


def test_yaml_1_2_the_key_on_stays_text() -> None:
    campaign = _one(
        "kind: Campaign\nname: c\nmodule: lead\nowner: anna\nto: {view: v}\ntemplate: t\n"
        "on:\n  opened: [{update: {field: interest, value: warm}}]\n"
    )
    assert "on" in campaign
    assert all(type(key) is str for key in campaign), list(campaign)  # not the YAML 1.1 boolean True
    assert campaign["on"] == {"opened": [{"update": {"field": "interest", "value": "warm"}}]}


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("7:30", "7:30"),
        ("07:30", "07:30"),
        ("yes", "yes"),
        ("off", "off"),
        ("Y", "Y"),
        ("2026-11-23", "2026-11-23"),
        ("true", True),
        ("false", False),
        ("12", 12),
    ],
)
def test_yaml_1_2_scalars(yaml_text: str, expected: object) -> None:
    value = _one(f"kind: View\nvalue: {yaml_text}\n")["value"]
    assert value == expected
    assert type(value) is type(expected)
