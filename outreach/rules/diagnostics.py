"""Errors and warnings about rule files, and how they are printed."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterable, Sequence


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


class Code(enum.StrEnum):
    """Every diagnostic has one code; docs/errors.md lists them all."""

    # reading files
    FILE_UNREADABLE = "file-unreadable"
    FILE_ENCODING = "file-encoding"
    FILE_TOO_LARGE = "file-too-large"
    FILE_EMPTY = "file-empty"
    RULES_DIR_EMPTY = "rules-dir-empty"
    YAML_SYNTAX = "yaml-syntax"
    YAML_DUPLICATE_KEY = "yaml-duplicate-key"
    YAML_NOT_MAPPING = "yaml-not-mapping"
    YAML_NON_STRING_KEY = "yaml-non-string-key"
    YAML_RECURSIVE_ALIAS = "yaml-recursive-alias"
    # document level
    KIND_MISSING = "kind-missing"
    KIND_UNKNOWN = "kind-unknown"
    NAME_DUPLICATE = "name-duplicate"
    RENAMED_FROM = "renamed-from"
    SETTINGS_MISSING = "settings-missing"
    SETTINGS_DUPLICATE = "settings-duplicate"
    # schema
    SCHEMA_UNKNOWN_KEY = "schema-unknown-key"
    SCHEMA_REQUIRED = "schema-required"
    SCHEMA_TYPE = "schema-type"
    SCHEMA_ENUM = "schema-enum"
    SCHEMA_FORMAT = "schema-format"
    SCHEMA_RANGE = "schema-range"
    SCHEMA_LENGTH = "schema-length"
    SCHEMA_ONE_OF = "schema-one-of"
    SCHEMA_OTHER = "schema-other"
    SECRET_INLINE = "secret-inline"
    # values
    DURATION_INVALID = "duration-invalid"
    WINDOW_INVALID = "window-invalid"
    CRON_INVALID = "cron-invalid"
    TIMEZONE_UNKNOWN = "timezone-unknown"
    HOLIDAY_COUNTRY_UNKNOWN = "holiday-country-unknown"
    HOLIDAY_SUBDIVISION_UNKNOWN = "holiday-subdivision-unknown"
    DATETIME_INVALID = "datetime-invalid"
    EMAIL_INVALID = "email-invalid"
    # references
    REF_TEMPLATE = "ref-template"
    REF_VIEW = "ref-view"
    REF_CALENDAR = "ref-calendar"
    REF_USER = "ref-user"
    REF_MAILBOX = "ref-mailbox"
    REF_FIELD = "ref-field"
    REF_MODULE = "ref-module"
    REF_SEQUENCE = "ref-sequence"
    REF_CAMPAIGN = "ref-campaign"
    REF_RECORD = "ref-record"
    REF_ORGANIZATION = "ref-organization"
    REF_TRACKING = "ref-tracking"
    # templates
    TEMPLATE_SYNTAX = "template-syntax"
    MERGE_FIELD_UNKNOWN = "merge-field-unknown"
    TEMPLATE_LIMIT = "template-limit"
    # criteria
    CRITERIA_OPERATOR = "criteria-operator"
    CRITERIA_VALUE = "criteria-value"
    # field values
    FIELD_VALUE_TYPE = "field-value-type"
    # sequences
    STEP_ID_DUPLICATE = "step-id-duplicate"
    STEP_KIND = "step-kind"
    STEP_THREAD = "step-thread"
    SEQUENCE_NO_STEPS = "sequence-no-steps"
    # campaigns
    FOLLOWUP_LIMIT = "followup-limit"
    FOLLOWUP_WHEN = "followup-when"
    FOLLOWUP_OPENED_DATE = "followup-opened-date"
    TRIGGER_LIMIT = "trigger-limit"
    TRIGGER_BOUNCED_ACTION = "trigger-bounced-action"
    CAMPAIGN_SLOT_FULL = "campaign-slot-full"
    CAMPAIGN_RECIPIENTS = "campaign-recipients"
    # settings and processes
    USER_DUPLICATE = "user-duplicate"
    DKIM_DOMAIN_DUPLICATE = "dkim-domain-duplicate"
    STAGE_DUPLICATE = "stage-duplicate"
    PROCESS_NO_MAX = "process-no-max"
    # rule tests
    RULETEST_APPLY = "ruletest-apply"
    RULETEST_EMPTY = "ruletest-empty"
    RULETEST_EVENT = "ruletest-event"
    RULETEST_EVENT_ORDER = "ruletest-event-order"
    RULETEST_RECORD_DUPLICATE = "ruletest-record-duplicate"
    RULETEST_WINDOW = "ruletest-window"
    # warnings
    TEMPLATE_UNUSED = "template-unused"
    CAMPAIGN_IN_PAST = "campaign-in-past"
    REMINDER_INTERVAL_SHORT = "reminder-interval-short"
    STEP_REPLY_SUBJECT = "step-reply-subject"


@dataclasses.dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem at a place: file, 1-based line and column, path in the document."""

    file: str
    line: int
    column: int
    severity: Severity
    code: Code
    message: str
    path: str = ""

    def as_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "severity": str(self.severity),
            "path": self.path,
            "message": self.message,
            "code": str(self.code),
        }


def did_you_mean(word: object, choices: Iterable[object]) -> str:
    """`; did you mean 'steps'?` for a near miss, else ''. A choice that starts the word wins."""
    if not isinstance(word, str) or not word:
        return ""
    options = [str(c) for c in choices]
    prefixed = [c for c in options if len(c) >= 3 and (word.startswith(c) or c.startswith(word))]
    if prefixed:
        return f"; did you mean {prefixed[0]!r}?"
    limit = max(1, len(word) // 4)
    scored = sorted((_edit_distance(word.lower(), c.lower()), c) for c in options)
    return f"; did you mean {scored[0][1]!r}?" if scored and scored[0][0] <= limit else ""


def _edit_distance(a: str, b: str) -> int:
    """Edits (insert, delete, replace, swap two neighbours) that turn a into b."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def sort_key(d: Diagnostic) -> tuple[str, int, int, str]:
    return (d.file, d.line, d.column, d.message)


def format_text(diags: Sequence[Diagnostic]) -> str:
    """`file:line:col: error: message [path]`, one a line (the code is in the json and github formats)."""
    lines = []
    for d in sorted(diags, key=sort_key):
        where = f" [{d.path}]" if d.path else ""
        lines.append(f"{d.file}:{d.line}:{d.column}: {d.severity}: {d.message}{where}")
    return "\n".join(lines)


def format_json(diags: Sequence[Diagnostic]) -> str:
    return json.dumps([d.as_json() for d in sorted(diags, key=sort_key)], indent=2, ensure_ascii=False)


def _github_escape(value: str, *, prop: bool) -> str:
    # GitHub's workflow-command escaping: data escapes %, CR, LF; properties also , and :
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        value = value.replace(":", "%3A").replace(",", "%2C")
    return value


def format_github(diags: Sequence[Diagnostic]) -> str:
    """GitHub Actions workflow commands, so problems show as annotations on the pull request."""
    lines = []
    for d in sorted(diags, key=sort_key):
        where = f" [{d.path}]" if d.path else ""
        level = "error" if d.severity is Severity.ERROR else "warning"
        lines.append(
            f"::{level} file={_github_escape(d.file, prop=True)},line={d.line},col={d.column},"
            f"title={_github_escape(str(d.code), prop=True)}::{_github_escape(d.message + where, prop=False)}"
        )
    return "\n".join(lines)


def count(diags: Iterable[Diagnostic], severity: Severity) -> int:
    return sum(1 for d in diags if d.severity is severity)
