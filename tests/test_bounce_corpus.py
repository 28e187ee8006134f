"""Real bounces nobody on this project wrote: the 117 messages of flufl.bounce 6.0.0's test data.

tests/data/flufl_bounce/ holds them with their licence, where they come from, and expected.yaml: the addresses
flufl.bounce's own tests expect, and whether each message carries a status code. The classifier must recognise
them, find their recipients and, where the message carries one, the status; none may ever be a reply, and none
acts unless it refers to a message of ours. bench/classify.py prints the same shares beside flufl.bounce's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from outreach.mail import inbound
from tests.conftest import ROOT

pytestmark = pytest.mark.unit

CORPUS = ROOT / "tests" / "data" / "flufl_bounce"
EXPECTED: dict[str, dict[str, Any]] = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))["messages"]
MESSAGES = {name: (CORPUS / name).read_bytes() for name in EXPECTED}
NOTHING_SENT = inbound.Sent()


class AllOurs:
    """A store that claims every id and every address: the worst case for "never a reply"."""

    def is_sent_message_id(self, message_id: str) -> bool:
        return True

    def sent_subjects_to(self, address: str) -> tuple[str, ...]:
        return ("anything",)


def test_the_corpus_is_vendored_whole_with_its_licence_and_where_it_comes_from() -> None:
    files = {p.name for p in Path(CORPUS).iterdir()}
    assert {"LICENSE", "README.md", "expected.yaml"} <= files
    assert {f for f in files if f.endswith(".txt")} == set(EXPECTED)
    assert len(EXPECTED) == 117
    assert "Apache License" in (CORPUS / "LICENSE").read_text()
    assert "flufl.bounce==6.0.0" in (CORPUS / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_real_bounce_is_recognised_with_its_recipients(name: str) -> None:
    expected = EXPECTED[name]
    result = inbound.classify(MESSAGES[name], NOTHING_SENT)
    if expected["kind"] == "other":
        assert result.kind not in inbound.REPORTS, result.reason
        return
    if name in KNOWN_MISSES:
        pytest.xfail(KNOWN_MISSES[name])
    assert result.kind in (inbound.Kind.BOUNCE, inbound.Kind.DELAYED), result.reason
    found = {r.address: r for r in result.bounced}
    assert set(expected["addresses"]) <= set(found), (found, result.reason)
    if expected.get("status"):
        assert all(found[a].status for a in expected["addresses"]), result.bounced
    # nothing of ours is named: a report that refers to no message of ours must change nothing
    assert result.verified is None and result.reason.endswith("unverified: no reference to a message of ours")


# The messages whose failed address the classifier does not find, and why (bench/classify.py counts them).
KNOWN_MISSES = {
    "aol_01.txt": "names a screen name without a domain (screenname)",
    "simple_20.txt": "a moderation notice from a person's address with a reply subject: no mail system wrote it",
    "yale_01.txt": "names a local part without a domain (userx); flufl.bounce appends the domain it guesses",
}


def test_the_shares_recognised_and_with_recipient_and_status_are_at_least_97_percent() -> None:
    bounces = {n: e for n, e in EXPECTED.items() if e["kind"] != "other"}
    recognised = with_recipient = with_status = carries_status = 0
    for name, expected in bounces.items():
        result = inbound.classify(MESSAGES[name], NOTHING_SENT)
        if result.kind not in (inbound.Kind.BOUNCE, inbound.Kind.DELAYED):
            continue
        recognised += 1
        found = {r.address: r.status for r in result.bounced}
        if expected["addresses"] and set(expected["addresses"]) <= set(found):
            with_recipient += 1
            if expected["status"] and all(found[a] for a in expected["addresses"]):
                with_status += 1
        carries_status += bool(expected.get("status"))
    named = sum(1 for e in bounces.values() if e["addresses"])
    assert recognised / len(bounces) >= 0.97, (recognised, len(bounces))
    assert with_recipient / named >= 0.97, (with_recipient, named)
    assert with_status == carries_status, (with_status, carries_status)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_real_bounce_is_ever_a_reply_even_when_the_store_claims_everything(name: str) -> None:
    result = inbound.classify(MESSAGES[name], AllOurs())
    if EXPECTED[name]["kind"] != "other":
        assert result.kind not in (inbound.Kind.REPLY, inbound.Kind.AUTO_REPLY), result.reason


def test_each_message_of_the_corpus_cut_anywhere_gives_a_safe_answer() -> None:
    for name, data in MESSAGES.items():
        for cut in (1, len(data) // 3, len(data) // 2, len(data) - 1):
            result = inbound.classify(data[:cut], NOTHING_SENT)
            assert result.kind in set(inbound.Kind), name
            assert "\n" not in result.reason and all("\n" not in r.diagnostic for r in result.bounced)
