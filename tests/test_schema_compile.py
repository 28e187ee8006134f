"""The compiled yes/no schema check must agree with jsonschema, which explains the failures."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from outreach.rules import loader, schema_compile, schemas
from tests.conftest import FIXTURES, ROOT

pytestmark = pytest.mark.unit


def _documents() -> list[tuple[str, Any]]:
    out = []
    for path in sorted([*ROOT.joinpath("rules").rglob("*.yaml"), *FIXTURES.rglob("*.yaml")]):
        docs, _ = loader.read_file(str(path))
        out += [(d.data["kind"], d.data) for d in docs if d.data.get("kind") in schemas.KINDS]
    return out


DOCUMENTS = _documents()


@functools.cache
def _checks(kind: str) -> tuple[schema_compile.Check, jsonschema.Draft202012Validator]:
    """The compiled check and jsonschema's validator of a kind's schema, each built once (thousands of documents
    are compared: building them for each costs more than the comparison)."""
    return schema_compile.compile_schema(schemas.schema(kind)), jsonschema.Draft202012Validator(schemas.schema(kind))


def _agree(kind: str, data: Any) -> None:
    check, validator = _checks(kind)
    fast = check(data)
    full = validator.is_valid(data)
    assert fast == full, f"fast check says {fast}, jsonschema says {full} for {data!r}"


def test_there_are_valid_and_invalid_documents_to_compare() -> None:
    results = [jsonschema.Draft202012Validator(schemas.schema(k)).is_valid(d) for k, d in DOCUMENTS]
    assert results.count(True) > 50 and results.count(False) > 25


@pytest.mark.parametrize(("kind", "data"), DOCUMENTS)
def test_fast_check_agrees_with_jsonschema_on_every_fixture_and_example(kind: str, data: Any) -> None:
    _agree(kind, data)


def _mutations(data: Any) -> list[Any]:
    """Copies of a valid document with one value replaced by a value of another type, or a key dropped/added."""
    out = []
    paths: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*path, i))

    walk(data, ())
    for path in paths[1:]:
        for replacement in (None, 7, True, "x", [], {}, "3 days\n", 1.5):
            doc = copy.deepcopy(data)
            parent = doc
            for part in path[:-1]:
                parent = parent[part]
            parent[path[-1]] = replacement
            out.append(doc)
        if isinstance(path[-1], str):
            doc = copy.deepcopy(data)
            parent = doc
            for part in path[:-1]:
                parent = parent[part]
            del parent[path[-1]]
            parent["unexpected_key"] = 1
            out.append(doc)
    return out


def test_fast_check_agrees_with_jsonschema_on_mutated_examples() -> None:
    compared = 0
    for path in sorted(ROOT.joinpath("rules").rglob("*.yaml")):
        for doc in loader.read_file(str(path))[0]:
            for mutated in _mutations(doc.data):
                _agree(doc.data["kind"], mutated)
                compared += 1
    assert compared > 1000


def test_an_unsupported_keyword_is_refused_not_ignored() -> None:
    with pytest.raises(ValueError, match="does not support"):
        schema_compile.compile_schema({"type": "object", "dependentRequired": {"a": ["b"]}})


def test_recursive_definitions_compile(tmp_path: Path) -> None:
    check = schema_compile.compile_schema(schemas.schema("View"))
    deep: dict[str, Any] = {"field": "stage", "eq": "New"}
    for _ in range(30):
        deep = {"not": {"all": [deep]}}
    assert check({"kind": "View", "name": "v", "module": "lead", "where": deep})
    deep["not"]["all"][0] = {"field": "stage"}
    assert not check({"kind": "View", "name": "v", "module": "lead", "where": deep})
