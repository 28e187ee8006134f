"""Large rule sets are read in several processes; the result must not depend on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from outreach.rules import validate
from tests.conftest import ROOT

pytestmark = pytest.mark.acceptance  # worker processes, as `outreach validate` starts them for a large rule set


def _big_rule_set(tmp_path: Path, broken: bool) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    for i in range(validate.PARALLEL_MIN_FILES + 20):
        (rules / f"t{i:03d}.yaml").write_text(
            f"kind: Template\nname: gen-{i}\nsubject: 'Hi {{{{ record.first_name }}}}'\n"
            f"text: |\n  Hello {{{{ record.first_name }}}},\n  {{{{ sender.name }}}}\n",
            encoding="utf-8",
        )
        (rules / f"s{i:03d}.yaml").write_text(
            f"kind: Sequence\nname: gen-{i}\nsteps:\n  - {{id: a, email: gen-{i}}}\n"
            f"  - {{id: b, email: gen-{i}, wait: 2 business days, thread: reply}}\n",
            encoding="utf-8",
        )
    if broken:
        (rules / "t007.yaml").write_text(
            "kind: Template\nname: gen-7\nsubject: Hi\ntext: |\n  one\n  {{ record.nickname }}\n", encoding="utf-8"
        )
        (rules / "s150.yaml").write_text(
            "kind: Sequence\nname: gen-150\nsteps:\n  - {id: a, email: gen-150, wait: 2 busines days}\n",
            encoding="utf-8",
        )
    return rules


def test_parallel_and_serial_validation_agree_on_a_clean_set(tmp_path: Path) -> None:
    rules = _big_rule_set(tmp_path, broken=False)
    one = validate.validate([str(rules)], jobs=1)
    two = validate.validate([str(rules)], jobs=2)
    assert one.ruleset is not None and two.ruleset is not None
    assert one.diagnostics == two.diagnostics
    assert list(one.ruleset.sequences) == list(two.ruleset.sequences)
    assert {k: v.source for k, v in one.ruleset.templates.items()} == {
        k: v.source for k, v in two.ruleset.templates.items()
    }


def test_parallel_validation_reports_errors_at_the_same_lines(tmp_path: Path) -> None:
    rules = _big_rule_set(tmp_path, broken=True)
    one = validate.validate([str(rules)], jobs=1)
    two = validate.validate([str(rules)], jobs=3)
    assert one.diagnostics == two.diagnostics
    where = {(Path(d.file).name, d.line, d.column, str(d.code)) for d in two.errors}
    assert where == {
        ("t007.yaml", 6, 6, "merge-field-unknown"),
        ("s150.yaml", 4, 35, "duration-invalid"),
    }
