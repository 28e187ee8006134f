"""Reading rule files: YAML 1.2 core values, a line and column for every node.

PyYAML resolves plain scalars the YAML 1.1 way (`NO` is false, `7:30` is 450,
`on` is true). A sales tool keeps country codes and times, so this loader
resolves them as YAML 1.2's core schema does: only true/false are booleans and
there are no sexagesimal numbers or implicit timestamps.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import yaml
import yaml.cyaml
import yaml.nodes

from outreach.rules.diagnostics import Code, Diagnostic, Severity

MAX_FILE_BYTES = 1024 * 1024
MAX_NODES = 200_000  # per document; stops alias bombs ("billion laughs")
# What the text of one file may expand to, counted as aliases are followed (the characters of every value and key
# each time it is reached): a few aliases of large values must not make every later step (content hashes, the
# store) handle gigabytes. Without aliases a file's values are never longer than the file.
MAX_EXPANDED_CHARS = 4 * MAX_FILE_BYTES


_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL_RE = re.compile(r"^(?:~|null|Null|NULL|)$")
_INT_RE = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


def resolve_plain(value: str) -> str:
    """The YAML 1.2 core schema's tag for a plain (unquoted) scalar."""
    first = value[:1]
    if first in "tTfF" and _BOOL_RE.match(value):
        return _BOOL
    if first in "~nN" and _NULL_RE.match(value):
        return _NULL
    if first in "-+0123456789.":
        if _INT_RE.match(value):
            return _INT
        if _FLOAT_RE.match(value):
            return _FLOAT
    return _STR


class Resolver12:
    """Tags by the YAML 1.2 core schema; libyaml's composer calls these for every node."""

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass  # no path-based resolvers

    def ascend_resolver(self) -> None:
        pass

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.nodes.ScalarNode:
            return resolve_plain(value) if implicit[0] else _STR
        return _SEQ if kind is yaml.nodes.SequenceNode else _MAP


class _Composer12(yaml.cyaml.CParser, Resolver12):  # type: ignore[misc,name-defined]
    """libyaml's parser and composer with the 1.2 resolver; nothing is constructed."""

    def __init__(self, stream: str) -> None:
        yaml.cyaml.CParser.__init__(self, stream)  # type: ignore[attr-defined]


class Mark(NamedTuple):
    """Where a node starts, 1-based, and a scalar's style: | literal, > folded, ' or \" quoted, '' plain."""

    line: int
    column: int
    style: str = ""


@dataclasses.dataclass(frozen=True)
class Document:
    """One YAML document of a rule file, as plain JSON-like data with marks."""

    file: str
    index: int
    data: Any
    line: int  # where the document starts
    text: str = dataclasses.field(repr=False, compare=False)  # the whole file's text
    _root: list[yaml.nodes.Node] = dataclasses.field(default_factory=list, repr=False, compare=False)
    prefix: tuple[str | int, ...] = ()  # a part of a document (`part`): where its data is in the document

    def part(self, path: Sequence[str | int]) -> Document:
        """The mapping at `path` as a document of its own (a RuleTest's inline definition): its marks and the
        paths of its problems stay those of the whole document."""
        data = self.data
        for key in path:
            data = data[key]
        where = (*self.prefix, *path)
        line = _mark(self._node(path)[0]).line
        return dataclasses.replace(self, data=data, line=line, prefix=where, _root=self._root)

    @property
    def root(self) -> yaml.nodes.Node:
        """The document's node tree; composed again from `text` after the document crossed a process."""
        if not self._root:
            loader = _Composer12(self.text)
            try:
                for _ in range(self.index):
                    loader.check_node()  # steps past the stream start, as get_node needs
                    node = loader.get_node()
            finally:
                loader.dispose()
            self._root.append(node)
        return self._root[0]

    def __getstate__(self) -> dict[str, Any]:
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        state["_root"] = []  # composed again on demand: node trees are large to send
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)

    def line_text(self, line: int) -> str:
        """Line `line` (1-based) of the file, or ''."""
        lines = self.text.splitlines()
        return lines[line - 1] if 0 < line <= len(lines) else ""

    def _node(self, path: Sequence[str | int]) -> tuple[yaml.nodes.Node, yaml.nodes.Node | None]:
        """The node at `path` (or its nearest existing ancestor) and the key node that names it."""
        node, key_node = self.root, None
        for part in (*self.prefix, *path):
            child = None
            if isinstance(node, yaml.nodes.MappingNode) and isinstance(part, str):
                child = next(((k, v) for k, v in node.value if k.value == part), None)
            elif isinstance(node, yaml.nodes.SequenceNode) and isinstance(part, int) and part < len(node.value):
                child = (None, node.value[part])
            if child is None:
                break
            key_node, node = child
        return node, key_node

    def mark(self, path: Sequence[str | int]) -> Mark:
        """The mark of the node at `path`, or of its nearest ancestor that exists."""
        return _mark(self._node(path)[0])

    def key_mark(self, path: Sequence[str | int]) -> Mark:
        """The mark of the key of the mapping entry at `path` (falls back to `mark`)."""
        node, key_node = self._node(path)
        return _mark(key_node if key_node is not None else node)

    def diag(
        self,
        path: Sequence[str | int],
        code: Code,
        message: str,
        *,
        severity: Severity = Severity.ERROR,
        at_key: bool = False,
    ) -> Diagnostic:
        m = self.key_mark(path) if at_key else self.mark(path)
        return Diagnostic(self.file, m.line, m.column, severity, code, message, format_path((*self.prefix, *path)))


def format_path(path: Sequence[str | int]) -> str:
    """`steps[2].wait` for ('steps', 2, 'wait')."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class _ComposeError(Exception):
    def __init__(self, code: Code, message: str, mark: Mark) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.mark = mark


def _mark(node: yaml.nodes.Node) -> Mark:
    style = (node.style or "") if isinstance(node, yaml.nodes.ScalarNode) else ""
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1, style)


class _Walker:
    """Turns composed node trees (the documents of one file) into plain data, refusing what JSON cannot hold.

    libyaml's composer resolves an alias to the very node its anchor names, so a node reached again is reached
    through an alias: its size is counted each time, and the file's documents together may expand to at most
    MAX_EXPANDED_CHARS before anything is built from them.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.nodes = 0  # in the current document (`document` resets it)
        self.size = 0  # characters reached in the whole file so far
        self.path: list[yaml.nodes.Node] = []  # the collections being walked, outermost first
        self.open: set[int] = set()  # and their ids
        self.visits: dict[int, int] = {}  # id of a node -> how often it was reached (more than once: by aliases)

    def document(self, node: yaml.nodes.Node) -> Any:
        """The data of one document of the file."""
        self.nodes = 0
        self.visits.clear()  # an alias refers to an anchor of its own document
        return self.value(node)

    def alias_mark(self, node: yaml.nodes.Node, nth: int = 1) -> Mark:
        """Where the nth alias to `node` is used (the first by default): the composer keeps only the anchored
        node, so the alias is looked up in the text after the anchor."""
        lines = self.text.splitlines()
        m = node.start_mark
        anchor = re.match(r"&([^\s,\[\]{}]+)", lines[m.line][m.column :]) if m.line < len(lines) else None
        if anchor:
            alias = re.compile(re.escape("*" + anchor.group(1)) + r"(?![^\s,\[\]{}])")
            for number, line in enumerate(lines[m.line :], start=m.line):
                start = m.column + anchor.end() if number == m.line else 0
                for found in alias.finditer(line, start):
                    nth -= 1
                    if nth == 0:
                        return Mark(number + 1, found.start() + 1)
        return _mark(node)

    def _count(self, node: yaml.nodes.Node, size: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _ComposeError(
                Code.YAML_RECURSIVE_ALIAS,
                f"the document expands to more than {MAX_NODES} nodes (aliases repeated too often)",
                _mark(node),
            )
        self.size += size
        if self.size > MAX_EXPANDED_CHARS:
            raise _ComposeError(
                Code.YAML_RECURSIVE_ALIAS,
                f"aliases expand the file to more than {MAX_EXPANDED_CHARS} characters (four times the largest "
                "rule file): write the values out, or alias only small pieces",
                self._blamed_alias(node),
            )

    def _blamed_alias(self, node: yaml.nodes.Node) -> Mark:
        """The alias through which the walk reached `node`: the outermost node on the way there that was reached
        before (the first time is its anchor; the nth time after, its nth alias)."""
        for reached in [*self.path, node]:
            seen = self.visits.get(id(reached), 0)
            if seen > 1:
                return self.alias_mark(reached, seen - 1)
        return _mark(node)

    def value(self, node: yaml.nodes.Node) -> Any:
        ident = id(node)
        self.visits[ident] = self.visits.get(ident, 0) + 1
        if type(node) is yaml.nodes.ScalarNode:
            self._count(node, 1 + len(node.value))
            return node.value if node.tag == _STR else _scalar(node)
        self._count(node, 1)
        if ident in self.open:
            raise _ComposeError(
                Code.YAML_RECURSIVE_ALIAS, "an alias refers to a node that contains it", self.alias_mark(node)
            )
        self.path.append(node)
        self.open.add(ident)
        try:
            if type(node) is yaml.nodes.SequenceNode:
                if node.tag != _SEQ:
                    raise _ComposeError(Code.YAML_SYNTAX, f"unsupported tag {node.tag}", _mark(node))
                return [self.value(child) for child in node.value]
            if type(node) is yaml.nodes.MappingNode:
                if node.tag != _MAP:
                    raise _ComposeError(Code.YAML_SYNTAX, f"unsupported tag {node.tag}", _mark(node))
                out: dict[str, Any] = {}
                for key_node, value_node in node.value:
                    if type(key_node) is not yaml.nodes.ScalarNode:
                        raise _ComposeError(
                            Code.YAML_NON_STRING_KEY, "a mapping key must be a plain value", _mark(key_node)
                        )
                    key = str(key_node.value)
                    self.size += len(key)
                    if key == "<<" and not key_node.style:
                        raise _ComposeError(
                            Code.YAML_SYNTAX,
                            "merge keys (<<) are YAML 1.1 and not supported in rule files; write the keys out",
                            _mark(key_node),
                        )
                    if key in out:
                        first = next(k for k, _ in node.value if k.value == key)
                        raise _ComposeError(
                            Code.YAML_DUPLICATE_KEY,
                            f"duplicate key {key!r} (first defined at line {first.start_mark.line + 1})",
                            _mark(key_node),
                        )
                    out[key] = self.value(value_node)
                return out
        finally:
            self.path.pop()
            self.open.discard(ident)
        raise _ComposeError(Code.YAML_SYNTAX, "unsupported YAML node", _mark(node))


def _scalar(node: yaml.nodes.ScalarNode) -> Any:
    text: str = node.value
    tag = node.tag
    if tag == _STR:
        return text
    if tag == _BOOL:
        return text.lower() == "true"
    if tag == _NULL:
        return None
    if tag == _INT:
        try:
            if text.startswith("0o"):
                return int(text[2:], 8)
            return int(text, 16) if text.startswith("0x") else int(text, 10)
        except ValueError:
            raise _ComposeError(Code.YAML_SYNTAX, f"{text!r} is not an integer", _mark(node)) from None
    if tag == _FLOAT:
        low = text.lower()
        if low.endswith(".inf"):
            return -math.inf if low.startswith("-") else math.inf
        if low == ".nan":
            return math.nan
        try:
            return float(text)
        except ValueError:
            raise _ComposeError(Code.YAML_SYNTAX, f"{text!r} is not a number", _mark(node)) from None
    raise _ComposeError(Code.YAML_SYNTAX, f"unsupported tag {tag} (rule files use plain YAML values)", _mark(node))


class Parsed(NamedTuple):
    """What reading one file gave: its documents, its problem, and the text an error kept from being read."""

    docs: list[Document]
    problems: list[Diagnostic]
    unread: str = ""  # from the document the error is in to the end of the file (what it defines is unknown)


def parse_text(text: str, file: str) -> tuple[list[Document], list[Diagnostic]]:
    """Parse every document of one file's text. Errors stop at the first one in the file."""
    docs, problems, _unread = parse(text, file)
    return docs, problems


def parse(text: str, file: str) -> Parsed:
    """`parse_text`, with the text that an error left unread."""
    docs: list[Document] = []
    loader = _Composer12(text)
    walker = _Walker(text)
    index = 0
    read_to = 0  # the line (0-based) where the last document read ends

    def fail(diag: Diagnostic) -> Parsed:
        return Parsed(docs, [diag], "".join(text.splitlines(keepends=True)[read_to:]))

    try:
        while loader.check_node():
            node = loader.get_node()
            index += 1
            if node is None or (isinstance(node, yaml.nodes.ScalarNode) and node.tag == _NULL):
                continue  # an empty document between `---` lines
            data = walker.document(node)
            if not isinstance(data, dict):
                kind = "a list" if isinstance(data, list) else "a single value"
                m = _mark(node)
                return fail(Diagnostic(file, m.line, m.column, Severity.ERROR, Code.YAML_NOT_MAPPING,
                                       f"document {index} is {kind}; a rule document is a mapping with a `kind`"))  # fmt: skip
            docs.append(Document(file, index, data, node.start_mark.line + 1, text, [node]))
            read_to = node.end_mark.line
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        # an unclosed quote or bracket is reported at the end of the file; point at its start
        if exc.context_mark is not None and "end of stream" in (exc.problem or ""):
            mark = exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        parts = [p for p in (exc.context, exc.problem) if p]
        message = "YAML syntax error: " + "; ".join(parts)
        lines = text.splitlines()
        if 0 < line <= len(lines) and "\t" in lines[line - 1][: col + 1]:
            message += " (a tab: YAML indents with spaces only)"
        return fail(Diagnostic(file, line, col, Severity.ERROR, Code.YAML_SYNTAX, message))
    except yaml.YAMLError as exc:
        return fail(Diagnostic(file, 1, 1, Severity.ERROR, Code.YAML_SYNTAX, f"YAML error: {exc}"))
    except _ComposeError as exc:
        return fail(Diagnostic(file, exc.mark.line, exc.mark.column, Severity.ERROR, exc.code, exc.message))
    finally:
        loader.dispose()
    if not docs:
        empty = Diagnostic(file, 1, 1, Severity.ERROR, Code.FILE_EMPTY, "the file holds no YAML document")
        return Parsed(docs, [empty])
    return Parsed(docs, [])


def compose_one(text: str) -> tuple[Any, yaml.nodes.Node | None]:
    """One YAML 1.2 document of any shape (a list, say, where rule files hold mappings): its plain data and its
    node, whose marks place errors. Raises yaml.YAMLError when the text is not one document."""
    composer = _Composer12(text)
    try:
        node = composer.get_single_node()
        return _Walker(text).document(node), node
    finally:
        composer.dispose()


def read_file(path: str) -> tuple[list[Document], list[Diagnostic]]:
    """Read one rule file (UTF-8, at most MAX_FILE_BYTES) and parse it."""
    docs, problems, _unread = read(path)
    return docs, problems


def read(path: str) -> Parsed:
    """`read_file`, with the text that an error left unread."""

    def fail(code: Code, message: str) -> Parsed:
        return Parsed([], [Diagnostic(path, 1, 1, Severity.ERROR, code, message)])

    try:
        size = os.stat(path).st_size
        if size > MAX_FILE_BYTES:
            return fail(
                Code.FILE_TOO_LARGE, f"the file is {size} bytes; rule files may be at most {MAX_FILE_BYTES} bytes"
            )
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        reason = "a symbolic link loop" if exc.errno == 40 else (exc.strerror or str(exc))
        return fail(Code.FILE_UNREADABLE, f"cannot read the file: {reason}")
    if b"\x00" in raw:
        return fail(Code.FILE_ENCODING, "the file is binary (it contains NUL bytes), not UTF-8 YAML")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        message = f"the file is not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        problem = Diagnostic(path, line, 1, Severity.ERROR, Code.FILE_ENCODING, message)
        return Parsed([], [problem], raw.decode("utf-8", "replace"))
    return parse(text, path)


def find_files(paths: Sequence[str]) -> tuple[list[str], list[Diagnostic]]:
    """Every *.yaml / *.yml under the given files and directories, sorted, each once.

    Hidden files and directories (`.git`, `.github`) are skipped; directory
    symlink loops are reported, not followed forever.
    """
    found: list[str] = []
    diags: list[Diagnostic] = []
    for top in paths:
        if not os.path.isdir(top):
            found.append(top)
            continue
        seen: set[str] = set()
        for root, dirs, files in os.walk(top, followlinks=True):
            real = os.path.realpath(root)
            if real in seen:
                diags.append(
                    Diagnostic(
                        root,
                        1,
                        1,
                        Severity.ERROR,
                        Code.FILE_UNREADABLE,
                        "a symbolic link loop: this directory was already read",
                    )
                )
                dirs[:] = []
                continue
            seen.add(real)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith(".") or not name.endswith((".yaml", ".yml")):
                    continue
                found.append(os.path.join(root, name))
    unique = list(dict.fromkeys(found))
    return unique, diags


def load(paths: Sequence[str]) -> tuple[list[str], list[Document], list[Diagnostic]]:
    """Read every rule file under `paths`: (files, documents, problems)."""
    files, diags = find_files(paths)
    docs: list[Document] = []
    for f in files:
        d, problems = read_file(f)
        docs.extend(d)
        diags.extend(problems)
    if not files and not diags:
        diags.append(no_rule_files(paths))
    return files, docs, diags


def no_rule_files(paths: Sequence[str]) -> Diagnostic:
    """The problem of rule paths that hold no rule file."""
    message = "no *.yaml or *.yml rule files found"
    return Diagnostic(", ".join(paths), 1, 1, Severity.ERROR, Code.RULES_DIR_EMPTY, message)
