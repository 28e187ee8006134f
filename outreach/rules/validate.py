"""Validate a rule directory: schema, values, references and limits; build the RuleSet.

Validation is all-or-nothing: a RuleSet comes back only when there is no error.
`now` is a parameter (for the "campaign in the past" warning); only the CLI
reads the clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import types
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from outreach.rules import (
    criteria,
    diagnostics,
    holiday_index,
    loader,
    model,
    schema_errors,
    schemas,
    templates,
    timing,
)
from outreach.rules.criteria import FieldType
from outreach.rules.diagnostics import Code, Diagnostic, Severity
from outreach.rules.loader import Document

T = TypeVar("T")
Path = tuple[str | int, ...]

_WEEKDAY_INDEX = {d: i for i, d in enumerate(schemas.WEEKDAYS)}


@dataclasses.dataclass(frozen=True)
class Result:
    """What validation found. `ruleset` is None when there is any error."""

    ruleset: model.RuleSet | None
    diagnostics: tuple[Diagnostic, ...]
    files: tuple[str, ...]
    documents: int

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.WARNING]


MAX_RENDER_SECONDS = 10  # limits.render_time: the daemon waits this long at most for a render when it stops

# Below this many files, starting worker processes costs more than it saves.
PARALLEL_MIN_FILES = 200


def validate(paths: Sequence[str], now: dt.datetime | None = None, *, jobs: int = 1) -> Result:
    """Load and check every rule file under `paths`.

    With jobs > 1 and a large rule set, files are read and their templates
    parsed in that many processes (fork); the checks across documents run here.
    Only single-threaded callers (the CLI) should ask for jobs > 1.
    """
    files, diags = loader.find_files(paths)
    if jobs > 1 and len(files) >= PARALLEL_MIN_FILES:
        ahead = _prepare_in_parallel(files, jobs)
        return _check(files, ahead.docs, diags + ahead.diags, now, ahead)
    ahead = _Ahead()
    for f in files:
        ahead.read(loader.read(f))
    if not files and not diags:
        diags.append(loader.no_rule_files(paths))
    return _check(files, ahead.docs, diags + ahead.diags, now, ahead)


def validate_texts(texts: Mapping[str, str], now: dt.datetime | None = None) -> Result:
    """Validate rule files given as {file name: text}, without touching the disk (for `plan --base`, tests)."""
    ahead = _Ahead()
    for name, text in texts.items():
        ahead.read(loader.parse(text, name))
    return _check(list(texts), ahead.docs, ahead.diags, now, ahead)


def rebuild_sequence(body: Mapping[str, Any], ruleset: model.RuleSet) -> model.Sequence | None:
    """A stored version of a sequence, as the model, read with today's Settings and names.

    Enrollments pinned to an older version run it as it was; its body comes from
    the store. None when that body no longer checks against today's rules (a
    step's template was removed, say): the engine then blocks with the reason.
    """
    import yaml

    docs, problems = loader.parse_text(yaml.safe_dump(dict(body), sort_keys=False), f"stored:{body.get('name')}")
    if problems or len(docs) != 1 or schema_errors.check(docs[0], "Sequence"):
        return None
    checker = _Checker(docs, None, _Ahead())
    checker.settings = ruleset.settings
    checker.names = {k: set() for k in schemas.KINDS}
    renamed = {old: new for (kind, new), olds in ruleset.renamed_from().items() if kind == "Template" for old in olds}
    checker.names["Template"] = set(ruleset.templates) | set(renamed)  # a template renamed since: by its new name
    sequence = checker._sequence(docs[0])
    if any(d.severity is Severity.ERROR for d in checker.diags):
        return None
    steps = tuple(dataclasses.replace(s, template=renamed.get(s.template or "", s.template)) for s in sequence.steps)
    return dataclasses.replace(sequence, steps=steps,
                               source=model.Source("stored", 0, model.content_hash(body), body))  # fmt: skip


@dataclasses.dataclass
class _Ahead:
    """Work on single files done before the checks across documents, possibly in other processes."""

    docs: list[Document] = dataclasses.field(default_factory=list)
    diags: list[Diagnostic] = dataclasses.field(default_factory=list)
    analyses: dict[str, templates.Analysis] = dataclasses.field(default_factory=dict)  # by template text
    schema_ok: set[tuple[str, int]] = dataclasses.field(default_factory=set)  # (file, index) passing the schema
    holidays: dict[str, tuple[str, ...] | None] = dataclasses.field(default_factory=dict)
    unread: dict[str, str] = dataclasses.field(default_factory=dict)  # file -> the text an error kept from being read

    def read(self, parsed: loader.Parsed) -> None:
        """Take in what reading one file gave."""
        self.docs.extend(parsed.docs)
        self.diags.extend(parsed.problems)
        if parsed.unread and parsed.problems:
            self.unread[parsed.problems[0].file] = parsed.unread

    def merge(self, other: _Ahead) -> None:
        self.docs.extend(other.docs)
        self.diags.extend(other.diags)
        self.analyses.update(other.analyses)
        self.schema_ok |= other.schema_ok
        self.holidays.update(other.holidays)
        self.unread.update(other.unread)


def _prepare(files: Sequence[str]) -> _Ahead:
    """Read files, check each document against its schema, parse every template, look up holiday countries."""
    ahead = _Ahead()
    for f in files:
        ahead.read(loader.read(f))
    for doc in ahead.docs:
        kind = doc.data.get("kind")
        if kind not in schemas.KINDS or not schema_errors.fast_check(kind)(doc.data):
            continue
        ahead.schema_ok.add((doc.file, doc.index))
        if kind == "Template":
            for key in ("subject", "text", "html"):
                source = doc.data.get(key)
                if isinstance(source, str) and source not in ahead.analyses:
                    ahead.analyses[source] = templates.analyze(source)
        elif kind == "Settings":
            for cal in doc.data.get("calendars", {}).values():
                country = (cal.get("holidays") or {}).get("country")
                if isinstance(country, str):
                    ahead.holidays[country] = holiday_index.subdivisions(country)
    return ahead


def _prepare_in_parallel(files: Sequence[str], jobs: int) -> _Ahead:
    import concurrent.futures
    import multiprocessing

    chunks = [list(files[i::jobs]) for i in range(jobs)]
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs - 1, mp_context=multiprocessing.get_context("fork")
    ) as pool:
        futures = [pool.submit(_prepare, chunk) for chunk in chunks[1:]]
        ahead = _prepare(chunks[0])
        for future in futures:
            ahead.merge(future.result())
    order = {f: i for i, f in enumerate(files)}
    ahead.docs.sort(key=lambda doc: (order[doc.file], doc.index))
    holiday_index.remember(ahead.holidays)
    return ahead


def check_documents(files: list[str], docs: list[Document], diags: list[Diagnostic]) -> Result:
    """Check documents read elsewhere (with the loader's problems so far) as `validate` checks files."""
    return _check(files, docs, diags, None)


def _check(
    files: list[str],
    docs: list[Document],
    diags: list[Diagnostic],
    now: dt.datetime | None,
    ahead: _Ahead | None = None,
) -> Result:
    checker = _Checker(docs, now, ahead or _Ahead())
    ruleset = checker.run()
    diags = diags + checker.diags
    has_error = any(d.severity is Severity.ERROR for d in diags)
    return Result(None if has_error else ruleset, tuple(sorted(diags)), tuple(files), len(docs))


def _frozen(d: dict[str, T]) -> Mapping[str, T]:
    return types.MappingProxyType(d)


class _Checker:
    def __init__(self, docs: list[Document], now: dt.datetime | None, ahead: _Ahead) -> None:
        self.docs = docs
        self.now = now
        self.diags: list[Diagnostic] = []
        self.by_kind: dict[str, list[Document]] = defaultdict(list)
        self.valid: set[int] = set()  # ids of documents that passed the schema
        self.settings = model.Settings(model.Source("", 0, ""))
        self.settings_ok = True
        self.ahead = ahead
        self._unread_words: set[str] | None = None
        self.renamed: dict[str, dict[str, str]] = {}  # kind -> {earlier name: name} (`renamed_from`)

    def unread(self, name: str) -> bool:
        """Whether `name` is written in the part of a file that an error kept from being read: what that part
        defines and uses is unknown, so a reference to the name, or the name's template unused, follows from that
        error alone and is not reported until it is fixed."""
        if not self.ahead.unread:
            return False
        if self._unread_words is None:
            self._unread_words = {w for text in self.ahead.unread.values() for w in _WORD.findall(text)}
        return name in self._unread_words

    # --- helpers ----------------------------------------------------------------

    def error(self, doc: Document, path: Path, code: Code, message: str, **kw: Any) -> None:
        self.diags.append(doc.diag(path, code, message, **kw))

    def warn(self, doc: Document, path: Path, code: Code, message: str, **kw: Any) -> None:
        self.diags.append(doc.diag(path, code, message, severity=Severity.WARNING, **kw))

    def parse(self, doc: Document, path: Path, code: Code, fn: Callable[[Any], T], value: Any) -> T | None:
        """Apply a value parser; on ValueError record the error and return None."""
        try:
            return fn(value)
        except ValueError as exc:
            self.error(doc, path, code, str(exc))
            return None

    def duration(self, doc: Document, path: Path, value: Any, *, plain: bool = False) -> timing.Duration | None:
        if value is None:
            return None
        d = self.parse(doc, path, Code.DURATION_INVALID, timing.parse_duration, value)
        if d is not None and plain and d.is_business:
            self.error(doc, path, Code.DURATION_INVALID, f"{value!r}: business days do not fit here; use days or weeks")
            return None
        return d

    def instant(self, doc: Document, path: Path, value: Any) -> dt.datetime | None:
        if value is None:
            return None
        return self.parse(doc, path, Code.DATETIME_INVALID, timing.parse_instant, value)

    def timezone(self, doc: Document, path: Path, value: Any) -> str | None:
        if value is None:
            return None
        return value if self.parse(doc, path, Code.TIMEZONE_UNKNOWN, timing.zone, value) is not None else None

    def email(self, doc: Document, path: Path, value: str) -> None:
        import email_validator

        try:
            email_validator.validate_email(value, check_deliverability=False)
        except email_validator.EmailNotValidError as exc:
            self.error(doc, path, Code.EMAIL_INVALID, f"{value!r} is not a valid email address: {exc}")

    def criteria(self, doc: Document, path: Path, data: Any) -> criteria.Criteria | None:
        if data is None or not self.settings_ok:
            return None  # without valid Settings the fields are unknown; its own errors are reported
        try:
            return criteria.parse(data, self.settings.fields, path)
        except criteria.CriteriaError as exc:
            self.error(doc, exc.path, Code(exc.code), exc.message)
            return None

    def unknown_field(self, field: str) -> str:
        return (
            f"unknown record field {field!r}{diagnostics.did_you_mean(field, self.settings.fields)}: "
            "declare it in Settings.record_fields"
        )

    def user_ref(self, doc: Document, path: Path, user: str) -> None:
        if self.settings_ok and user not in self.settings.users:
            known = list(self.settings.users)
            self.error(
                doc,
                path,
                Code.REF_USER,
                f"unknown user {user!r}{diagnostics.did_you_mean(user, known)}"
                f" (users: {', '.join(known) or 'none declared in Settings.users'})",
            )

    def who(self, doc: Document, path: Path, value: str | None, default: str = "record_owner") -> model.Who:
        if value is None:
            return model.Who(default)
        if value.startswith("user:"):
            self.user_ref(doc, path, value[5:])
            return model.Who("user", value[5:])
        return model.Who(value)

    def module_ref(self, doc: Document, path: Path, module: str) -> None:
        if self.settings_ok and module not in self.settings.all_modules:
            known = self.settings.all_modules
            self.error(
                doc,
                path,
                Code.REF_MODULE,
                f"unknown module {module!r}{diagnostics.did_you_mean(module, known)} "
                f"(modules: {', '.join(known)}; declare custom ones in Settings.modules)",
            )

    def source(self, doc: Document) -> model.Source:
        return model.Source(doc.file, doc.line, model.content_hash(doc.data), doc.data)

    # --- the run --------------------------------------------------------------------

    def run(self) -> model.RuleSet | None:
        self._classify()
        settings_docs = self.by_kind.get("Settings", [])
        if settings_docs:
            first = settings_docs[0]
            for extra in settings_docs[1:]:
                self.error(
                    extra,
                    ("kind",),
                    Code.SETTINGS_DUPLICATE,
                    f"a rule set has one Settings document; the first is at {first.file}:{first.line}",
                )
            if id(first) in self.valid:
                self.settings = self._settings(first)
            else:
                self.settings_ok = False  # its schema errors are reported; do not cascade into the others
        elif self.docs and self.unread("Settings"):
            self.settings_ok = False  # a file that cannot be read holds it: its error is reported
        elif self.docs:
            self.settings_ok = False  # record fields, users and modules are unknown: do not guess
            d = self.docs[0]
            self.diags.append(
                Diagnostic(
                    d.file,
                    1,
                    1,
                    Severity.ERROR,
                    Code.SETTINGS_MISSING,
                    "the rule set has no Settings document (kind: Settings)",
                )
            )
        built: dict[str, dict[str, Any]] = {k: {} for k in schemas.KINDS}
        builders: dict[str, Callable[[Document], Any]] = {
            "Template": self._template,
            "Sequence": self._sequence,
            "View": self._view,
            "Campaign": self._campaign,
            "SalesProcess": self._process,
            "RuleTest": self._rule_test,
        }
        names: dict[str, set[str]] = {
            k: {d.data["name"] for d in self.by_kind.get(k, []) if isinstance(d.data.get("name"), str)}
            for k in schemas.KINDS
        }
        self.names = names
        self.renamed = self._renames()
        built_docs: dict[str, list[tuple[Document, Any]]] = defaultdict(list)

        def build(kind: str) -> None:
            for doc in self.by_kind.get(kind, []):
                if id(doc) not in self.valid:
                    continue
                item = builders[kind](doc)
                built[kind][item.name] = item
                built_docs[kind].append((doc, item))

        for kind in ("Template", "View", "Sequence", "Campaign", "SalesProcess"):
            build(kind)
        self._cross_checks(built_docs)
        self._warnings(built_docs)
        build("RuleTest")  # last: an `apply` event checks its changed rule set against every problem found above
        return model.RuleSet(
            settings=self.settings,
            templates=_frozen(built["Template"]),
            sequences=_frozen(built["Sequence"]),
            views=_frozen(built["View"]),
            campaigns=_frozen(built["Campaign"]),
            processes=_frozen(built["SalesProcess"]),
            tests=_frozen(built["RuleTest"]),
        )

    def _renames(self) -> dict[str, dict[str, str]]:
        """Each kind's earlier names (`renamed_from`) and what they are called now. An earlier name is not a
        definition's own, not defined as well (the renamed one takes its place), and no other definition's."""
        out: dict[str, dict[str, str]] = {k: {} for k in model.RENAMABLE}
        for kind in model.RENAMABLE:
            defined = {d.data["name"]: d for d in self.by_kind.get(kind, []) if isinstance(d.data.get("name"), str)}
            what = _KIND_WORDS[kind]
            for doc in self.by_kind.get(kind, []):
                if id(doc) not in self.valid or "renamed_from" not in doc.data:
                    continue
                name, one = doc.data["name"], isinstance(doc.data["renamed_from"], str)
                for j, old in enumerate(model.earlier_names(doc.data)):
                    path: Path = ("renamed_from",) if one else ("renamed_from", j)
                    if old == name:
                        self.error(doc, path, Code.RENAMED_FROM, f"the {what} {name!r} cannot be renamed from its own "
                                   "name")  # fmt: skip
                    elif old in defined:
                        other = defined[old]
                        self.error(doc, path, Code.RENAMED_FROM,
                                   f"the {what} {old!r} is defined at {other.file}:{other.line}: the {what} renamed "
                                   f"from it takes its place (and keeps what it had); remove one of them")  # fmt: skip
                    elif old in out[kind]:
                        self.error(doc, path, Code.RENAMED_FROM,
                                   f"the {what} {old!r} is already the earlier name of {out[kind][old]!r}: only one "
                                   "definition can take its place")  # fmt: skip
                    else:
                        out[kind][old] = name
        return out

    def _classify(self) -> None:
        first_of: dict[tuple[str, str], Document] = {}
        for doc in self.docs:
            kind = doc.data.get("kind")
            if kind is None:
                self.error(
                    doc,
                    (),
                    Code.KIND_MISSING,
                    f"document {doc.index} has no `kind` (one of {', '.join(schemas.KINDS)})",
                )
                continue
            if not isinstance(kind, str) or kind not in schemas.KINDS:
                hint = _suggest_kind(kind)
                self.error(
                    doc,
                    ("kind",),
                    Code.KIND_UNKNOWN,
                    f"unknown kind {kind!r}{hint} (kinds: {', '.join(schemas.KINDS)})",
                )
                continue
            self.by_kind[kind].append(doc)
            passed = (doc.file, doc.index) in self.ahead.schema_ok
            problems = [] if passed else schema_errors.check(doc, kind)
            self.diags.extend(problems)
            if not any(p.severity is Severity.ERROR for p in problems):
                self.valid.add(id(doc))
            name = doc.data.get("name")
            if kind != "Settings" and isinstance(name, str):
                if (kind, name) in first_of:
                    first = first_of[(kind, name)]
                    self.error(
                        doc,
                        ("name",),
                        Code.NAME_DUPLICATE,
                        f"{kind} {name!r} is already defined at {first.file}:{first.mark(('name',)).line}",
                    )
                    self.valid.discard(id(doc))
                else:
                    first_of[(kind, name)] = doc

    # --- Settings ------------------------------------------------------------------------

    def _settings(self, doc: Document) -> model.Settings:
        data = doc.data
        tz = self.timezone(doc, ("timezone",), data.get("timezone", "UTC")) or "UTC"
        calendars = {}
        for name, cal in data.get("calendars", {}).items():
            p: Path = ("calendars", name)
            hol = cal.get("holidays") or {}
            country, sub = hol.get("country"), hol.get("subdivision")
            if country is not None:
                self._check_holidays(doc, (*p, "holidays"), country, sub)
            window = None
            if "send_window" in cal:
                window = self.parse(
                    doc, (*p, "send_window"), Code.WINDOW_INVALID, timing.parse_window, cal["send_window"]
                )
            calendars[name] = model.Calendar(
                name=name,
                workdays=frozenset(_WEEKDAY_INDEX[d] for d in cal.get("workdays", schemas.WEEKDAYS[:5])),
                holiday_country=country,
                holiday_subdivision=sub,
                send_window=window,
                timezone=self.timezone(doc, (*p, "timezone"), cal.get("timezone")),
            )
        org = None
        if "organization" in data:
            o = data["organization"]
            self.email(doc, ("organization", "email"), o["email"])
            org = model.Organization(o["name"], o["email"], o.get("address"), o.get("website"), o.get("phone"))
        mailboxes = {
            name: self._server(doc, ("mailboxes", name), name, mb, imap=True)
            for name, mb in data.get("mailboxes", {}).items()
        }
        users: dict[str, model.User] = {}
        for i, u in enumerate(data.get("users", [])):
            p = ("users", i)
            if u["id"] in users:
                self.error(doc, (*p, "id"), Code.USER_DUPLICATE, f"user id {u['id']!r} is used twice")
                continue
            self.email(doc, (*p, "email"), u["email"])
            if "mailbox" in u and u["mailbox"] not in mailboxes:
                self.error(
                    doc,
                    (*p, "mailbox"),
                    Code.REF_MAILBOX,
                    f"unknown mailbox {u['mailbox']!r}{diagnostics.did_you_mean(u['mailbox'], mailboxes)} "
                    f"(mailboxes: {', '.join(mailboxes) or 'none declared in Settings.mailboxes'})",
                )
            users[u["id"]] = model.User(
                u["id"],
                u["name"],
                u["email"],
                u.get("mailbox"),
                u.get("daily_limit"),
                self.timezone(doc, (*p, "timezone"), u.get("timezone")),
                u.get("title"),
                u.get("phone"),
                u.get("signature"),
            )
        fields: dict[str, FieldType] = {}
        for name, ftype in data.get("record_fields", {}).items():
            if name in criteria.BUILTIN_FIELDS:
                self.error(
                    doc,
                    ("record_fields", name),
                    Code.REF_FIELD,
                    f"{name!r} is a built-in record field; it needs no declaration",
                    at_key=True,
                )
                continue
            fields[name] = FieldType(ftype)
        modules = tuple(data.get("modules", ()))
        for i, m in enumerate(modules):
            if m in schemas.MODULES_BUILTIN:
                self.error(doc, ("modules", i), Code.REF_MODULE, f"{m!r} is a built-in module; it needs no declaration")
        t = data.get("transport", {"type": "maildir"})
        transport = model.Transport(
            type=t["type"],
            maildir=t.get("maildir", "var/outbox"),
            smtp=self._server(doc, ("transport", "smtp"), "smtp", t["smtp"], imap=False) if "smtp" in t else None,
        )
        tracking = None
        if "tracking" in data:
            tr = data["tracking"]
            tracking = model.Tracking(
                tr["base_url"],
                tr.get("secret_env"),
                tr.get("secret_file"),
                tr.get("opens", True),
                tr.get("clicks", True),
            )
        w = data.get("web", {})
        web = model.Web(w.get("listen", model.Web.listen), w.get("api_token_env"), w.get("api_token_file"))
        if not 0 < web.host_port[1] < 65536:
            self.error(doc, ("web", "listen"), Code.SCHEMA_RANGE, f"port {web.host_port[1]} is not 1-65535")
        lim = data.get("limits", {})
        freeze = self.duration(doc, ("limits", "campaign_freeze"), lim.get("campaign_freeze"), plain=True)
        render_time = self.duration(doc, ("limits", "render_time"), lim.get("render_time"), plain=True)
        if render_time is not None and not 1 <= render_time.seconds <= MAX_RENDER_SECONDS:
            self.error(doc, ("limits", "render_time"), Code.SCHEMA_RANGE,
                       f"{lim['render_time']!r}: rendering a message may take 1s to {MAX_RENDER_SECONDS}s (a longer "
                       "time keeps a stopping daemon waiting)")  # fmt: skip
            render_time = None
        limits = model.Limits(
            lim.get("campaigns_per_slot", 5),
            freeze or model.Limits().campaign_freeze,
            lim.get("max_attempts", 8),
            {domain.lower(): cap for domain, cap in lim.get("domains", {}).items()},
            render_time or model.Limits().render_time,
            lim.get("message_size", model.Limits().message_size),
        )
        db = data.get("database", {})
        return model.Settings(
            bounce_address=data.get("bounce_address"),
            dkim=self._dkim(doc, data.get("dkim", [])),
            database_url=db.get("url"),
            database_url_env=db.get("url_env"),
            source=self.source(doc),
            timezone=tz,
            calendars=_frozen(calendars),
            organization=org,
            users=_frozen(users),
            record_fields=_frozen(fields),
            modules=modules,
            transport=transport,
            mailboxes=_frozen(mailboxes),
            tracking=tracking,
            web=web,
            limits=limits,
        )

    def _dkim(self, doc: Document, entries: list[dict[str, Any]]) -> tuple[model.DkimKey, ...]:
        keys: dict[str, model.DkimKey] = {}
        for i, k in enumerate(entries):
            p: Path = ("dkim", i)
            domain = k["domain"].lower()
            if len(domain) > 253:
                self.error(doc, (*p, "domain"), Code.SCHEMA_LENGTH, "a domain name has at most 253 characters")
            if not any(key in k for key in ("private_key_file", "private_key_env")):
                self.error(doc, p, Code.SCHEMA_REQUIRED, "a DKIM key needs private_key_file or private_key_env")
            elif "private_key_file" in k and "private_key_env" in k:
                self.error(doc, p, Code.SCHEMA_ONE_OF, "give the private key one way: private_key_file or "
                           "private_key_env, not both")  # fmt: skip
            if domain in keys:
                first = next(j for j, e in enumerate(entries) if e["domain"].lower() == domain)
                self.error(doc, (*p, "domain"), Code.DKIM_DOMAIN_DUPLICATE,
                           f"domain {domain!r} has a DKIM key already (dkim[{first}]); a domain signs with one key "
                           "(to rotate, change the selector and the key together)")  # fmt: skip
                continue
            keys[domain] = model.DkimKey(domain, k["selector"].lower(), k.get("private_key_env"),
                                         k.get("private_key_file"))  # fmt: skip
        return tuple(keys.values())

    def _check_holidays(self, doc: Document, path: Path, country: str, sub: str | None) -> None:
        subdivisions = holiday_index.subdivisions(country)
        if subdivisions is None:
            from holidays import registry

            hint = diagnostics.did_you_mean(country, [v[1] for v in registry.COUNTRIES.values()])
            for class_name, alpha2, alpha3, *_rest in registry.COUNTRIES.values():
                if country.upper() == alpha3 or country.replace(" ", "").lower() == class_name.lower():
                    hint = f"; did you mean {alpha2!r} ({class_name})?"
            self.error(
                doc,
                (*path, "country"),
                Code.HOLIDAY_COUNTRY_UNKNOWN,
                f"python-holidays knows no country {country!r}{hint} (use an ISO 3166 alpha-2 code such as DE, AT, US)",
            )
        elif sub is not None and sub not in subdivisions:
            self.error(
                doc,
                (*path, "subdivision"),
                Code.HOLIDAY_SUBDIVISION_UNKNOWN,
                f"{country} has no subdivision {sub!r} (known: {', '.join(subdivisions) or 'none'})",
            )

    def _server(self, doc: Document, path: Path, name: str, s: dict[str, Any], *, imap: bool) -> model.Server:
        if imap:
            if not any(k in s for k in ("password_env", "password_file")):
                self.error(doc, path, Code.SCHEMA_REQUIRED, "a mailbox needs password_env or password_file")
            if not any(k in s for k in ("username", "username_env", "username_file")):
                self.error(doc, path, Code.SCHEMA_REQUIRED, "a mailbox needs username, username_env or username_file")
        default_port = (
            (993 if s.get("security") == "tls" else 143) if imap else (465 if s.get("security") == "tls" else 587)
        )
        return model.Server(
            name=name,
            host=s["host"],
            port=s.get("port", default_port),
            security=model.Security(s.get("security", "tls" if imap else "starttls")),
            username=s.get("username"),
            username_env=s.get("username_env"),
            username_file=s.get("username_file"),
            password_env=s.get("password_env"),
            password_file=s.get("password_file"),
            timeout=self.duration(doc, (*path, "timeout"), s.get("timeout"), plain=True) or model.Server.timeout,
            pool_size=s.get("pool_size", 4),
            rate=s.get("rate"),
            folder=s.get("folder", "INBOX"),
            poll_every=self.duration(doc, (*path, "poll_every"), s.get("poll_every"), plain=True)
            or model.Server.poll_every,
        )

    # --- Templates ---------------------------------------------------------------

    def _template(self, doc: Document) -> model.Template:
        data = doc.data
        fields = frozenset(self.settings.fields) if self.settings_ok else None
        for key in ("subject", "text", "html"):
            if key not in data:
                continue
            source = data[key]
            analysis = self.ahead.analyses.get(source) or templates.analyze(source)
            found = templates.problems(analysis, fields)
            if self.settings_ok:
                found += self._template_settings_problems(analysis)
            if analysis.syntax is None:
                found += templates.excess_problems(
                    analysis, message_size=self.settings.limits.message_size, is_text=self._merge_text
                )
            for problem in found:
                line, column = _template_position(doc, doc.mark((key,)), problem)
                self.diags.append(
                    Diagnostic(
                        doc.file,
                        line,
                        column,
                        Severity.ERROR,
                        Code(problem.code),
                        problem.message,
                        loader.format_path((*doc.prefix, key)),
                    )
                )
        return model.Template(
            self.source(doc),
            data["name"],
            data["subject"],
            data["text"],
            data.get("html"),
            data.get("shared", True),
            data.get("description"),
        )

    def _merge_text(self, obj: str, attr: str) -> bool:
        """Whether a merge value is text (repeating it makes a long text), as far as the rule set says."""
        if obj != "record":
            return True
        return self.settings_ok and self.settings.fields.get(attr) is FieldType.STRING

    def _template_settings_problems(self, analysis: templates.Analysis) -> list[templates.TemplateProblem]:
        """Merge names that need a part of Settings that is missing."""
        out = []
        for name, line in analysis.names:
            if name == "unsubscribe_url" and self.settings.tracking is None:
                out.append(templates.TemplateProblem(line, str(Code.REF_TRACKING), _NO_TRACKING, name))
        for obj, attr, line in analysis.attributes:
            if obj == "organization" and self.settings.organization is None:
                message = f"organization.{attr} needs Settings.organization (its name and email)"
                out.append(templates.TemplateProblem(line, str(Code.REF_ORGANIZATION), message, f"{obj}.{attr}"))
        return out

    def unsubscribe_ref(self, doc: Document, data: Mapping[str, Any]) -> str | None:
        """The language of the rule's unsubscribe link, checking that links can be signed and served."""
        unsub = data.get("unsubscribe_link")
        if unsub is None:
            return None
        if self.settings_ok and self.settings.tracking is None:
            self.error(doc, ("unsubscribe_link",), Code.REF_TRACKING, _NO_TRACKING, at_key=True)
        return str(unsub.get("language", "en"))

    def template_ref(self, doc: Document, path: Path, name: str) -> None:
        if name not in self.names["Template"] and not self.unread(name):
            self.error(doc, path, Code.REF_TEMPLATE, f"unknown template {name!r}{self._now_named('Template', name)}")

    # --- Sequences --------------------------------------------------------------------

    def _sequence(self, doc: Document) -> model.Sequence:
        data = doc.data
        steps = []
        seen_ids: dict[str, int] = {}
        first_email = True
        for i, s in enumerate(data["steps"]):
            p: Path = ("steps", i)
            if s["id"] in seen_ids:
                self.error(
                    doc,
                    (*p, "id"),
                    Code.STEP_ID_DUPLICATE,
                    f"step id {s['id']!r} is already used by steps[{seen_ids[s['id']]}]",
                )
            seen_ids.setdefault(s["id"], i)
            wait = self.duration(doc, (*p, "wait"), s.get("wait", 0)) or timing.Duration()
            if "email" in s:
                for key in ("task_type", "due_within"):
                    if key in s:
                        self.error(
                            doc,
                            (*p, key),
                            Code.STEP_KIND,
                            f"`{key}` belongs to task steps, not email steps",
                            at_key=True,
                        )
                self.template_ref(doc, (*p, "email"), s["email"])
                thread = model.Thread(s.get("thread", "new"))
                if first_email and thread is model.Thread.REPLY:
                    self.error(
                        doc,
                        (*p, "thread"),
                        Code.STEP_THREAD,
                        "the first email step has no earlier mail to reply to; use `thread: new`",
                    )
                first_email = False
                steps.append(model.Step(s["id"], model.StepKind.EMAIL, wait, template=s["email"], thread=thread))
            else:
                if "thread" in s:
                    self.error(
                        doc,
                        (*p, "thread"),
                        Code.STEP_KIND,
                        "`thread` belongs to email steps, not task steps",
                        at_key=True,
                    )
                due = self.duration(doc, (*p, "due_within"), s.get("due_within"))
                steps.append(
                    model.Step(
                        s["id"],
                        model.StepKind.TASK,
                        wait,
                        task=s["task"],
                        task_type=s.get("task_type", "todo"),
                        due_within=due,
                    )
                )
        applies_to = tuple(data.get("applies_to", ("lead", "contact")))
        for i, m in enumerate(applies_to):
            self.module_ref(doc, ("applies_to", i), m)
        sender_text = data.get("sender", "enrolling_user")
        if sender_text.startswith("user:"):
            self.user_ref(doc, ("sender",), sender_text[5:])
            sender = model.Sender(model.SenderKind.USER, sender_text[5:])
        else:
            sender = model.Sender(model.SenderKind(sender_text))
        self.calendar_ref(doc, data.get("calendar", "default"))
        return model.Sequence(
            source=self.source(doc),
            name=data["name"],
            steps=tuple(steps),
            applies_to=applies_to,
            sender=sender,
            calendar=data.get("calendar", "default"),
            on_edit=model.OnEdit(data.get("on_edit", "pin")),
            unsubscribe_language=self.unsubscribe_ref(doc, data),
            enroll_when=self.criteria(doc, ("enroll_when",), data.get("enroll_when")),
            description=data.get("description"),
        )

    # --- Views -----------------------------------------------------------------------

    def _view(self, doc: Document) -> model.View:
        data = doc.data
        self.module_ref(doc, ("module",), data["module"])
        where = self.criteria(doc, ("where",), data["where"])
        return model.View(
            self.source(doc), data["name"], data["module"], where or criteria.All(()), data.get("description")
        )

    # --- Campaigns ------------------------------------------------------------------------

    def _triggers(self, doc: Document, path: Path, data: dict[str, Any] | None) -> model.Triggers:
        if not data:
            return model.Triggers()
        out: dict[str, tuple[model.Action, ...]] = {}
        limits = {"update": 3, "task": 2, "call": 2}
        for trigger in ("opened", "clicked", "bounced"):
            actions: list[model.Action] = []
            counts: dict[str, int] = defaultdict(int)
            for i, a in enumerate(data.get(trigger, [])):
                p: Path = (*path, trigger, i)
                kind = next(iter(a))
                counts[kind] += 1
                if counts[kind] == limits[kind] + 1:
                    self.error(
                        doc,
                        p,
                        Code.TRIGGER_LIMIT,
                        f"a trigger allows at most {limits[kind]} "
                        f"{'field updates' if kind == 'update' else kind + 's'}; `{trigger}` has more",
                    )
                if trigger == "bounced" and kind != "update":
                    self.error(
                        doc,
                        (*p, kind),
                        Code.TRIGGER_BOUNCED_ACTION,
                        f"a bounced mail allows field updates only, not a {kind}",
                        at_key=True,
                    )
                body = a[kind]
                if kind == "update":
                    actions.append(self._field_update(doc, (*p, "update"), body))
                elif kind == "task":
                    actions.append(
                        model.TaskAction(
                            body["subject"],
                            self.duration(doc, (*p, "task", "due"), body.get("due")),
                            body.get("priority", "normal"),
                            self.who(doc, (*p, "task", "assign_to"), body.get("assign_to")),
                            body.get("status", "not started"),
                        )
                    )
                else:
                    actions.append(
                        model.CallAction(
                            body["subject"],
                            self.who(doc, (*p, "call", "owner"), body.get("owner")),
                            self.duration(doc, (*p, "call", "at"), body.get("at")),
                        )
                    )
            out[trigger] = tuple(actions)
        bounced = tuple(a for a in out["bounced"] if isinstance(a, model.FieldUpdate))
        return model.Triggers(out["opened"], out["clicked"], bounced)

    def _field_update(self, doc: Document, path: Path, body: dict[str, Any]) -> model.FieldUpdate:
        field, value = body["field"], body["value"]
        fields = self.settings.fields
        if self.settings_ok and field not in fields:
            self.error(
                doc,
                (*path, "field"),
                Code.REF_FIELD,
                f"unknown field {field!r}{diagnostics.did_you_mean(field, fields)}: declare it in Settings.record_fields",
            )
        elif self.settings_ok:
            if field in ("id", "type", "created_at"):
                self.error(doc, (*path, "field"), Code.REF_FIELD, f"the field {field!r} cannot be updated")
            else:
                value = self._typed(doc, (*path, "value"), field, value)
        return model.FieldUpdate(field, value)

    def _typed(self, doc: Document, path: Path, field: str, value: Any) -> Any:
        try:
            return criteria.coerce_value(self.settings.fields[field], value)
        except ValueError as exc:
            self.error(doc, path, Code.FIELD_VALUE_TYPE, f"{field} is a {self.settings.fields[field]} field: {exc}")
            return value

    def calendar_ref(self, doc: Document, cal: str) -> None:
        if self.settings_ok and cal != "default" and cal not in self.settings.calendars:
            known = ["default", *self.settings.calendars]
            self.error(
                doc,
                ("calendar",),
                Code.REF_CALENDAR,
                f"unknown calendar {cal!r}{diagnostics.did_you_mean(cal, known)} (calendars: {', '.join(dict.fromkeys(known))})",
            )

    def _campaign(self, doc: Document) -> model.Campaign:
        data = doc.data
        if "calendar" in data:
            self.calendar_ref(doc, data["calendar"])
        self.module_ref(doc, ("module",), data["module"])
        self.user_ref(doc, ("owner",), data["owner"])
        for key in ("from", "reply_to"):
            if data.get(key) == "organization" and self.settings_ok and self.settings.organization is None:
                self.error(
                    doc,
                    (key,),
                    Code.REF_ORGANIZATION,
                    f"`{key}: organization` needs Settings.organization (its name and email)",
                )
        to = data["to"]
        if "view" in to:
            view_docs = [d for d in self.by_kind.get("View", []) if d.data.get("name") == to["view"]]
            if not view_docs:
                if not self.unread(to["view"]):
                    self.error(doc, ("to", "view"), Code.REF_VIEW,
                               f"unknown view {to['view']!r}{diagnostics.did_you_mean(to['view'], self.names['View'])}")  # fmt: skip
            elif view_docs[0].data.get("module") != data["module"]:
                self.error(
                    doc,
                    ("to", "view"),
                    Code.REF_VIEW,
                    f"the view {to['view']!r} lists "
                    f"{view_docs[0].data.get('module')} records; the campaign mails {data['module']} records",
                )
        recipients = model.Recipients(
            to.get("view"), self.criteria(doc, ("to", "where"), to.get("where")), tuple(to.get("records", ()))
        )
        self.template_ref(doc, ("template",), data["template"])
        send_at = self.instant(doc, ("send_at",), data.get("send_at"))
        follow_ups = []
        for i, f in enumerate(data.get("follow_ups", [])):
            p: Path = ("follow_ups", i)
            self.template_ref(doc, (*p, "template"), f["template"])
            at = self.instant(doc, (*p, "at"), f.get("at"))
            if f["to"] == "opened" and "at" in f:
                self.error(
                    doc,
                    (*p, "at"),
                    Code.FOLLOWUP_OPENED_DATE,
                    "a follow-up to those who opened the mail waits a number of days (`after: 3 days`), not a date",
                    at_key=True,
                )
            if at is not None and send_at is not None and at <= send_at:
                self.error(
                    doc,
                    (*p, "at"),
                    Code.FOLLOWUP_WHEN,
                    f"the follow-up is dated {at.isoformat()}, not after the campaign's send_at",
                )
            follow_ups.append(
                model.FollowUp(
                    f["to"],
                    f["template"],
                    self.duration(doc, (*p, "after"), f.get("after")),
                    at,
                    self.criteria(doc, (*p, "except"), f.get("except")),
                    self._triggers(doc, (*p, "on"), f.get("on")),
                    f.get("name"),
                )
            )
        return model.Campaign(
            source=self.source(doc),
            name=data["name"],
            module=data["module"],
            owner=data["owner"],
            to=recipients,
            template=data["template"],
            from_=data.get("from", "owner"),
            reply_to=data.get("reply_to", "from"),
            send_at=send_at,
            unsubscribe_language=self.unsubscribe_ref(doc, data),
            triggers=self._triggers(doc, ("on",), data.get("on")),
            calendar=data.get("calendar"),
            follow_ups=tuple(follow_ups),
            description=data.get("description"),
        )

    # --- Sales processes ------------------------------------------------------------------

    def _process(self, doc: Document) -> model.SalesProcess:
        data = doc.data
        self.module_ref(doc, ("module",), data["module"])
        stage_field = data.get("stage_field", "stage")
        fields = self.settings.fields
        if self.settings_ok and stage_field not in fields:
            self.error(doc, ("stage_field",), Code.REF_FIELD, self.unknown_field(stage_field))
        elif self.settings_ok and fields[stage_field] is not FieldType.STRING:
            self.error(
                doc,
                ("stage_field",),
                Code.REF_FIELD,
                f"the stage field {stage_field!r} is a {fields[stage_field]} field; it must be text "
                "(the built-in `stage` or a declared string field)",
            )
        stages = []
        seen: set[str] = set()
        for i, s in enumerate(data["stages"]):
            if s["name"] in seen:
                self.error(doc, ("stages", i, "name"), Code.STAGE_DUPLICATE, f"stage {s['name']!r} is listed twice")
            seen.add(s["name"])
            stages.append(model.Stage(s["name"], self.duration(doc, ("stages", i, "max"), s.get("max"))))
        fu = data.get("follow_up", {"enabled": False})
        p: Path = ("follow_up",)
        if fu.get("template") is not None:
            self.template_ref(doc, (*p, "template"), fu["template"])
        elif fu["enabled"]:
            self.error(doc, p, Code.SCHEMA_REQUIRED, "reminders are enabled: name the `template` of the reminder mail")
        if fu["enabled"] and not any(s.max is not None for s in stages):
            self.error(
                doc,
                ("stages",),
                Code.PROCESS_NO_MAX,
                "reminders need overdue records: give at least one stage a `max` duration",
            )
        cron = fu.get("at", "0 7 * * *")
        self.parse(doc, (*p, "at"), Code.CRON_INVALID, timing.check_cron, cron)
        policy = model.ReminderPolicy(
            enabled=fu["enabled"],
            every=self.duration(doc, (*p, "every"), fu.get("every"), plain=True),
            at=cron,
            timezone=self.timezone(doc, (*p, "timezone"), fu.get("timezone", "UTC")) or "UTC",
            to=self.who(doc, (*p, "to"), fu.get("to")),
            template=fu.get("template"),
            digest=fu.get("digest", False),
        )
        return model.SalesProcess(
            source=self.source(doc),
            name=data["name"],
            module=data["module"],
            stages=tuple(stages),
            stage_field=stage_field,
            where=self.criteria(doc, ("where",), data.get("where")),
            follow_up=policy,
            description=data.get("description"),
        )

    # --- Rule tests -------------------------------------------------------------------------

    def _rule_test(self, doc: Document) -> model.RuleTest:
        data = doc.data
        start = self.instant(doc, ("start",), data["start"]) or dt.datetime.min.replace(tzinfo=dt.UTC)
        until = self.instant(doc, ("until",), data.get("until"))
        if until is not None and until <= start:
            self.error(doc, ("until",), Code.RULETEST_WINDOW, "`until` must be after `start`")
        records: list[model.TestRecord] = []
        ids: dict[str, int] = {}
        for i, r in enumerate(data.get("records", [])):
            p: Path = ("records", i)
            if r["id"] in ids:
                self.error(
                    doc,
                    (*p, "id"),
                    Code.RULETEST_RECORD_DUPLICATE,
                    f"record id {r['id']!r} is already used by records[{ids[r['id']]}]",
                )
            ids.setdefault(r["id"], i)
            self.module_ref(doc, (*p, "type"), r["type"])
            fields = {}
            for key, value in r.items():
                if key in ("id", "type"):
                    continue
                if self.settings_ok and key not in self.settings.fields:
                    self.error(
                        doc,
                        (*p, key),
                        Code.REF_FIELD,
                        self.unknown_field(key),
                        at_key=True,
                    )
                    continue
                if key == "owner" and isinstance(value, str):
                    self.user_ref(doc, (*p, key), value)
                fields[key] = self._typed(doc, (*p, key), key, value) if self.settings_ok else value
            records.append(model.TestRecord(r["id"], r["type"], _frozen(fields)))
        events = []
        previous: dt.datetime | None = None
        base = (self.settings, self.settings_ok, self.names, self.renamed)
        in_force: list[Document] | None = None  # with `apply` events: the documents of the rule set in force
        named = self.names  # and the names in the rule set at any time of the run, for the expectations
        try:
            for i, e in enumerate(data.get("events", [])):
                p = ("events", i)
                if "apply" in e:
                    if in_force is None:
                        in_force = [d for d in self.docs if d.data.get("kind") in _RULE_KINDS]
                        named = {k: set(v) for k, v in self.names.items()}
                    in_force, changed = self._changed_rules(doc, (*p, "apply"), e["apply"], in_force)
                    for k, v in self.names.items():
                        named[k] |= v
                    at = self.instant(doc, (*p, "at"), e["at"])
                    previous = self._event_time(doc, p, at, start, until, previous)
                    events.append(model.TestEvent(at or start, "apply", _frozen(dict(e["apply"])),
                                                  doc.mark(p).line, changed))  # fmt: skip
                    continue
                previous, event = self._event(doc, p, e, start, until, previous, ids)
                events.append(event)
            self.names = named
            expect = self._expectations(doc, data["expect"], ids)
        finally:
            self.settings, self.settings_ok, self.names, self.renamed = base
        return model.RuleTest(
            self.source(doc),
            data["name"],
            start,
            until,
            tuple(records),
            tuple(events),
            expect,
            data.get("description"),
        )

    def _event_time(
        self, doc: Document, p: Path, at: dt.datetime | None, start: dt.datetime, until: dt.datetime | None,
        previous: dt.datetime | None,
    ) -> dt.datetime | None:  # fmt: skip
        """Check an event's time against the run and the event before it; the time the next one follows."""
        if at is None:
            return previous
        if at < start or (until is not None and at > until):
            self.error(
                doc,
                (*p, "at"),
                Code.RULETEST_WINDOW,
                "the event is outside the test's run (from `start` to `until`)",
            )
        if previous is not None and at < previous:
            self.error(
                doc,
                (*p, "at"),
                Code.RULETEST_EVENT_ORDER,
                f"events must be in time order; this one is before the previous ({previous.isoformat()})",
            )
        return at

    def _event(
        self, doc: Document, p: Path, e: dict[str, Any], start: dt.datetime, until: dt.datetime | None,
        previous: dt.datetime | None, ids: Mapping[str, int],
    ) -> tuple[dt.datetime | None, model.TestEvent]:  # fmt: skip
        """An event on records, its references checked against the rule set in force at its time."""
        at = self.instant(doc, (*p, "at"), e["at"])
        kind = next(k for k in e if k != "at")
        args = dict(e[kind])
        previous = self._event_time(doc, p, at, start, until, previous)
        self._event_refs(doc, (*p, kind), kind, args, ids)
        return previous, model.TestEvent(at or start, kind, _frozen(args), doc.mark(p).line)

    def _changed_rules(
        self, doc: Document, p: Path, body: Mapping[str, Any], in_force: list[Document]
    ) -> tuple[list[Document], model.RuleSet | None]:
        """An `apply` event: the documents of the rule set it leaves in force, checked as `outreach validate`
        checks a rule set, and that rule set (None when it has errors).

        Problems in its inline definitions are reported where they are written; a problem the change makes
        elsewhere (a removed template a sequence still sends) is reported at the event, naming where it is.
        The events after this one refer to the changed set's names and users.
        """
        parts = [doc.part((*p, "definitions", j)) for j in range(len(body.get("definitions", [])))]
        defined = {_definition_key(x.data) for x in parts}
        # a definition renamed here (`renamed_from`) takes the place of the one it was
        defined |= {(str(x.data.get("kind")), old) for x in parts for old in model.earlier_names(x.data)}
        present = {_definition_key(d.data): d for d in in_force}
        removed = set()
        for j, r in enumerate(body.get("remove", [])):
            key = (r["kind"], r["name"])
            if key in defined:
                self.error(doc, (*p, "remove", j), Code.RULETEST_APPLY,
                           f"{r['kind']} {r['name']!r} is both removed and defined by this apply")  # fmt: skip
            elif key not in present:
                known = sorted(n for k, n in present if k == r["kind"])
                self.error(doc, (*p, "remove", j, "name"), Code.RULETEST_APPLY,
                           f"there is no {r['kind']} {r['name']!r} to remove{diagnostics.did_you_mean(r['name'], known)}"
                           f" ({r['kind']} definitions: {', '.join(known) or 'none'})")  # fmt: skip
            removed.add(key)
        docs = [d for d in in_force if _definition_key(d.data) not in defined | removed] + parts
        # the documents of the rule files passed their schema above; inline ones are checked here
        ahead = _Ahead(analyses=self.ahead.analyses, holidays=self.ahead.holidays, unread=self.ahead.unread)
        ahead.schema_ok = {(d.file, d.index) for d in docs if not d.prefix and id(d) in self.valid}
        checker = _Checker(docs, self.now, ahead)
        ruleset = checker.run()
        known_diags = set(self.diags)
        here = loader.format_path(p) + "."
        for d in checker.diags:
            if d in known_diags:
                continue  # a problem of the rule set as it was: reported already
            if d.file == doc.file and d.path.startswith(here):
                self.diags.append(d)
            elif d.severity is Severity.ERROR:
                where = f" [{d.path}]" if d.path else ""
                self.error(doc, p, Code.RULETEST_APPLY, f"after this apply, {d.file}:{d.line}:{d.column}: "
                           f"{d.message}{where}", at_key=True)  # fmt: skip
        if checker.settings_ok:
            self.settings = checker.settings
        self.names = checker.names
        self.renamed = checker.renamed
        failed = any(d.severity is Severity.ERROR for d in checker.diags)
        return docs, None if failed or ruleset is None else ruleset

    def _event_refs(self, doc: Document, p: Path, kind: str, args: dict[str, Any], ids: Mapping[str, int]) -> None:
        if args["record"] not in ids:
            self.error(
                doc,
                (*p, "record"),
                Code.REF_RECORD,
                f"unknown record {args['record']!r}{diagnostics.did_you_mean(args['record'], ids)}: list it under `records`",
            )
        if "sequence" in args and args["sequence"] not in self.names["Sequence"] and not self.unread(args["sequence"]):
            self.error(
                doc,
                (*p, "sequence"),
                Code.REF_SEQUENCE,
                f"unknown sequence {args['sequence']!r}{self._now_named('Sequence', args['sequence'])}",
            )
        if "campaign" in args and args["campaign"] not in self.names["Campaign"] and not self.unread(args["campaign"]):
            self.error(
                doc,
                (*p, "campaign"),
                Code.REF_CAMPAIGN,
                f"unknown campaign {args['campaign']!r}{diagnostics.did_you_mean(args['campaign'], self.names['Campaign'])}",
            )
        if "as" in args:
            self.user_ref(doc, (*p, "as"), args["as"])
        if kind == "starts" or "starts" in args:
            parsed = self.instant(doc, (*p, "starts"), args["starts"])
            if parsed is not None:
                args["starts"] = parsed
        if kind == "set":
            for key, value in list(args.items()):
                if key == "record":
                    continue
                if self.settings_ok and key not in self.settings.fields:
                    self.error(doc, (*p, key), Code.REF_FIELD, self.unknown_field(key), at_key=True)
                elif self.settings_ok:
                    args[key] = self._typed(doc, (*p, key), key, value)

    def _when(self, doc: Document, path: Path, value: Any) -> model.When | None:
        if value is None:
            return None
        if isinstance(value, dict):
            w = model.When(
                after=self.instant(doc, (*path, "after"), value.get("after")),
                before=self.instant(doc, (*path, "before"), value.get("before")),
            )
            if w.after and w.before and w.before < w.after:
                self.error(doc, path, Code.RULETEST_WINDOW, "the window's `before` is earlier than its `after`")
            return w
        return model.When(at=self.instant(doc, path, value))

    def _expectations(self, doc: Document, e: dict[str, Any], ids: Mapping[str, int]) -> model.Expectations:
        def record_ref(path: Path, rid: str) -> None:
            if rid not in ids:
                self.error(doc, path, Code.REF_RECORD, f"unknown record {rid!r}{diagnostics.did_you_mean(rid, ids)}")

        sent = None
        if "sent" in e:
            sent_list = []
            for i, s in enumerate(e["sent"]):
                p: Path = ("expect", "sent", i)
                self.template_ref(doc, (*p, "template"), s["template"])
                sent_list.append(
                    model.SentExpectation(
                        self._when(doc, (*p, "at"), s["at"]) or model.When(),
                        s["to"],
                        s["template"],
                        s.get("subject"),
                        s.get("from"),
                        s.get("thread"),
                        doc.mark(p).line,
                    )
                )
            sent = tuple(sent_list)
        tasks = []
        for i, t in enumerate(e.get("tasks", [])):
            p = ("expect", "tasks", i)
            record_ref((*p, "record"), t["record"])
            tasks.append(
                model.TaskExpectation(
                    t["record"], t["subject"], self._when(doc, (*p, "at"), t.get("at")), doc.mark(p).line
                )
            )
        updates = []
        for i, u in enumerate(e.get("updates", [])):
            p = ("expect", "updates", i)
            record_ref((*p, "record"), u["record"])
            fu = self._field_update(doc, p, u)
            updates.append(model.UpdateExpectation(u["record"], fu.field, fu.value, doc.mark(p).line))
        enrollments = []
        for i, x in enumerate(e.get("enrollments", [])):
            p = ("expect", "enrollments", i)
            record_ref((*p, "record"), x["record"])
            if x["sequence"] not in self.names["Sequence"] and not self.unread(x["sequence"]):
                self.error(
                    doc,
                    (*p, "sequence"),
                    Code.REF_SEQUENCE,
                    f"unknown sequence {x['sequence']!r}{self._now_named('Sequence', x['sequence'])}",
                )
            enrollments.append(
                model.EnrollmentExpectation(x["record"], x["sequence"], x["status"], x.get("reason"), doc.mark(p).line)
            )
        campaigns = [self._campaign_expectation(doc, ("expect", "campaigns", i), x)
                     for i, x in enumerate(e.get("campaigns", []))]  # fmt: skip
        return model.Expectations(sent, tuple(tasks), tuple(updates), tuple(enrollments), tuple(campaigns))

    def _campaign_expectation(self, doc: Document, p: Path, x: dict[str, Any]) -> model.CampaignExpectation:
        """A campaign step's statistics: the campaign must be one the rule set has at some time of the run, and
        the step one of its follow-ups."""
        name, step = x["campaign"], x.get("step", 0)
        if name not in self.names["Campaign"] and not self.unread(name):
            self.error(doc, (*p, "campaign"), Code.REF_CAMPAIGN,
                       f"unknown campaign {name!r}{self._now_named('Campaign', name)}")  # fmt: skip
        else:
            found = [d.data for d in self.by_kind.get("Campaign", []) if d.data.get("name") == name]
            ups = found[0].get("follow_ups") if len(found) == 1 else None
            if step and isinstance(ups, list) and step > len(ups):
                self.error(doc, (*p, "step"), Code.REF_CAMPAIGN,
                           f"campaign {name!r} has {len(ups)} follow-up{'' if len(ups) == 1 else 's'}: step is 0 (the "
                           f"campaign mail){''.join(f' or {i}' for i in range(1, len(ups) + 1))}")  # fmt: skip
        skipped = x.get("skipped")
        counts = {k: x[k] for k in model.CAMPAIGN_COUNTS if k in x}
        if not counts and skipped is None and "status" not in x:
            self.error(doc, p, Code.RULETEST_EMPTY, f"expects nothing of campaign {name!r}: give its `status`, "
                       f"`skipped` or a count ({', '.join(model.CAMPAIGN_COUNTS)})")  # fmt: skip
        if isinstance(skipped, int):
            counts["skipped"] = skipped
        return model.CampaignExpectation(name, step, _frozen(counts),
                                         _frozen(skipped if isinstance(skipped, dict) else {}), x.get("status"),
                                         doc.mark(p).line)  # fmt: skip

    # --- across documents -------------------------------------------------------------------

    def _cross_checks(self, built: Mapping[str, list[tuple[Document, Any]]]) -> None:
        slots: dict[tuple[str, dt.datetime], list[tuple[Document, model.Campaign]]] = defaultdict(list)
        for doc, c in built.get("Campaign", []):
            if c.send_at is not None:  # a slot is a minute, in UTC, as `apply` counts them (engine.slot_key)
                slots[(c.module, c.send_at.astimezone(dt.UTC).replace(second=0, microsecond=0))].append((doc, c))
        limit = self.settings.limits.campaigns_per_slot
        for (module, at), items in slots.items():
            for doc, c in items[limit:]:
                self.error(
                    doc,
                    ("send_at",),
                    Code.CAMPAIGN_SLOT_FULL,
                    f"at most {limit} {module} campaigns may be scheduled for {at.isoformat()}; "
                    f"{c.name!r} is number {items.index((doc, c)) + 1} "
                    f"(others: {', '.join(x.name for _, x in items if x is not c)})",
                )
        self._merge_names_by_use(built)

    def _merge_names_by_use(self, built: Mapping[str, list[tuple[Document, Any]]]) -> None:
        """Merge names that only one use of a template has: a template is checked alone, its uses here."""
        by_name: dict[str, model.Template] = {t.name: t for _doc, t in built.get("Template", [])}

        def used(name: str | None) -> set[str]:
            t = by_name.get(name) if name is not None else None
            found: set[str] = set()
            for source in (t.subject, t.text, t.html) if t is not None else ():
                if source:
                    found |= {n for n, _line in (self.ahead.analyses.get(source) or templates.analyze(source)).names}
            return found

        reminder_only = set(templates.REMINDER_NAMES)
        uses: list[tuple[Document, Path, str | None]] = []
        for doc, s in built.get("Sequence", []):
            uses += [(doc, ("steps", i, "email"), step.template) for i, step in enumerate(s.steps)]
        for doc, c in built.get("Campaign", []):
            uses.append((doc, ("template",), c.template))
            uses += [(doc, ("follow_ups", i, "template"), f.template) for i, f in enumerate(c.follow_ups)]
        for doc, path, name in uses:
            wrong = sorted(used(name) & reminder_only)
            if wrong:
                self.error(doc, path, Code.MERGE_FIELD_UNKNOWN, f"template {name!r} uses {_listed(wrong)}, which only "
                           "reminder mail (a SalesProcess's follow_up) has")  # fmt: skip
        for doc, p in built.get("SalesProcess", []):
            names = used(p.follow_up.template)
            path = ("follow_up", "template")
            wrong = sorted(names & {"sender", "unsubscribe_url"})
            if wrong:
                self.error(doc, path, Code.MERGE_FIELD_UNKNOWN,
                           f"template {p.follow_up.template!r} uses {_listed(wrong)}: reminder mail goes to a user "
                           "from the organization's address; use recipient.* and organization.*")  # fmt: skip
            single = sorted(names & {"record", "owner", "stage", "in_stage", "max", "overdue_since", "reminder"})
            if p.follow_up.digest and single:
                self.error(doc, path, Code.MERGE_FIELD_UNKNOWN,
                           f"template {p.follow_up.template!r} uses {_listed(single)}, but with `digest: true` a mail "
                           "lists several records: loop over them, {% for r in records %}{{ r.record.email }} "
                           "{{ r.stage }}{% endfor %}")  # fmt: skip

    def _warnings(self, built: Mapping[str, list[tuple[Document, Any]]]) -> None:
        self._reply_subjects(built)
        # from every document, not only the valid ones: a typo elsewhere must not make a template look unused
        used = {name for doc in self.docs for name in _templates_named(doc.data)}
        for doc, t in built.get("Template", []):
            if t.name not in used and not self.unread(t.name):
                self.warn(
                    doc,
                    ("name",),
                    Code.TEMPLATE_UNUSED,
                    f"template {t.name!r} is not used by any sequence, campaign or sales process",
                )
        if self.now is not None:
            for doc, c in built.get("Campaign", []):
                if c.send_at is not None and c.send_at < self.now:
                    self.warn(
                        doc,
                        ("send_at",),
                        Code.CAMPAIGN_IN_PAST,
                        f"send_at {c.send_at.isoformat()} is in the past: the campaign would go out at once",
                    )
        for doc, p in built.get("SalesProcess", []):
            every = p.follow_up.every
            if p.follow_up.enabled and every is not None and every.seconds < 86400:
                self.warn(
                    doc,
                    ("follow_up", "every"),
                    Code.REMINDER_INTERVAL_SHORT,
                    f"reminders every {every} are sent at the daily run only; an interval under a day "
                    "behaves like 1 day",
                )


    def _now_named(self, kind: str, name: str) -> str:
        """The hint for an unknown name: the name it has now (`renamed_from`), or a known name like it."""
        now_named = self.renamed.get(kind, {}).get(name)
        if now_named is not None:
            return f": it is renamed to {now_named!r} (renamed_from)"
        return diagnostics.did_you_mean(name, sorted(self.names[kind]))

    def _reply_subjects(self, built: Mapping[str, list[tuple[Document, Any]]]) -> None:
        """A `thread: reply` step goes out as "Re: " and the subject of the mail that started its thread; its own
        template's subject, when it says something else, is never seen."""
        templates = {t.name: t for _doc, t in built.get("Template", [])}
        for doc, s in built.get("Sequence", []):
            started: tuple[int, model.Step] | None = None  # the email step whose subject the thread keeps
            for i, step in enumerate(s.steps):
                if step.kind is not model.StepKind.EMAIL:
                    continue
                if step.thread is not model.Thread.REPLY or started is None:
                    started = (i, step)
                    continue
                own, kept = templates.get(step.template or ""), templates.get(started[1].template or "")
                if own is None or kept is None or _bare(own.subject) == _bare(kept.subject):
                    continue
                self.warn(doc, ("steps", i, "thread"), Code.STEP_REPLY_SUBJECT,
                          f"step {i + 1} ({step.id}) replies in the thread of step {started[0] + 1} "
                          f"({started[1].id}), so it goes out as \"Re: {_bare(kept.subject)}\"; the subject of "
                          f"template {own.name!r}, {own.subject!r}, is not used (give both templates one subject, "
                          "or use `thread: new`)")  # fmt: skip


def _bare(subject: str) -> str:
    """A subject without the `Re: ` a reply adds."""
    return subject.strip().removeprefix("Re: ").strip()


_KIND_WORDS = {"Template": "template", "Sequence": "sequence", "View": "view", "Campaign": "campaign",
               "SalesProcess": "sales process"}  # fmt: skip
_RULE_KINDS = frozenset(schemas.KINDS) - {"RuleTest"}  # what a rule set holds besides its tests
_WORD = re.compile(r"[A-Za-z0-9_.-]+")  # what a name is made of (schemas.NAME_PATTERN)


def _definition_key(data: Mapping[str, Any]) -> tuple[str, str]:
    """(kind, name) of a definition; a rule set's one Settings whatever its name."""
    kind = str(data.get("kind"))
    return (kind, "") if kind == "Settings" else (kind, str(data.get("name")))


def _listed(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _templates_named(data: Mapping[str, Any]) -> set[str]:
    """Template names a document refers to, read from its raw data (valid or not)."""
    kind = data.get("kind")
    names: list[Any] = []
    if kind == "Sequence" and isinstance(data.get("steps"), list):
        names += [step.get("email") for step in data["steps"] if isinstance(step, dict)]
    elif kind == "Campaign":
        names.append(data.get("template"))
        if isinstance(data.get("follow_ups"), list):
            names += [f.get("template") for f in data["follow_ups"] if isinstance(f, dict)]
    elif kind == "SalesProcess" and isinstance(data.get("follow_up"), dict):
        names.append(data["follow_up"].get("template"))
    return {n for n in names if isinstance(n, str)}


_NO_TRACKING = (
    "unsubscribe links are signed and served by the web endpoints: add Settings.tracking "
    "(its base_url, and secret_env or secret_file)"
)


def _template_position(doc: Document, mark: loader.Mark, problem: templates.TemplateProblem) -> tuple[int, int]:
    """The file line and column of a problem on a template's line `problem.line`.

    A literal block (`|`) keeps lines one to one. Folded (`>`), quoted and plain
    scalars join lines, so there the problem's text is looked up in the file.
    """
    needles = [n for n in (problem.needle, problem.needle.rpartition(".")[2]) if n]
    if mark.style == "|":
        line = mark.line + problem.line
        text = doc.line_text(line)
        col = next((c for c in (text.find(n) for n in needles) if c >= 0), len(text) - len(text.lstrip()))
        return line, col + 1
    for needle in needles:
        for line in range(mark.line, mark.line + 1000):
            text = doc.line_text(line)
            start = mark.column - 1 if line == mark.line else 0
            col = text.find(needle, start)
            if col >= 0:
                return line, col + 1
            if line > mark.line and text and not text[0].isspace():
                break  # the next key: the scalar has ended
    if mark.style == ">":
        return mark.line + 1, mark.column
    return mark.line, mark.column


def _suggest_kind(kind: Any) -> str:
    if isinstance(kind, str):
        for k in schemas.KINDS:
            if k.lower() == kind.lower():
                return f"; did you mean {k!r}?"
    return diagnostics.did_you_mean(kind, schemas.KINDS)
