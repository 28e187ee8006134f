"""What an editor shows in the rule files (docs/editors.md): Red Hat's real yaml-language-server, spoken to over stdio,
checks every document of every file in rules/ against its kind's schema, through the schema lines and through the
page's `yaml.schemas` mapping, and underlines a broken key on its line.

The server is the npm package .ci/run installs into .ci/yaml-language-server (YAML_LANGUAGE_SERVER below); without it,
or without node, the tests skip, and fail when CI=true.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, need

pytestmark = pytest.mark.integration

YAML_LANGUAGE_SERVER = ROOT / ".ci" / "yaml-language-server" / "node_modules" / "yaml-language-server"
TIMEOUT = 30.0  # seconds the server gets to answer a request or to publish a file's diagnostics
MODELINE = re.compile(r"^# yaml-language-server: \$schema=\S+\n", re.M)
SETTINGS = {
    "validate": True,
    "yamlVersion": "1.2",  # as outreach reads rule files (docs/editors.md)
    "schemaStore": {"enable": False},  # no download of schemastore.org's catalogue
}


class LanguageServer:
    """A yaml-language-server process and the diagnostics it has published, by file."""

    def __init__(self, settings: Mapping[str, Any], log: Path) -> None:
        self.settings = dict(settings)
        self.log = log  # the server's stderr
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                ["node", str(YAML_LANGUAGE_SERVER / "bin" / "yaml-language-server"), "--stdio"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        self.ids = itertools.count(1)
        self.writing = threading.Lock()  # the test and the reader thread (answering the server) both write
        self.changed = threading.Condition()
        self.responses: dict[int, dict[str, Any]] = {}
        self.diagnostics: dict[str, list[dict[str, Any]]] = {}
        self.configured = False  # the server has asked for its settings and had them
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def initialize(self, root: Path) -> None:
        """The LSP handshake on the workspace folder `root`; returns once the server has its settings."""
        self.request(
            "initialize",
            {
                "processId": None,
                "rootUri": root.as_uri(),
                "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}],
                "capabilities": {"workspace": {"configuration": True}},
            },
        )
        self.notify("initialized", {})
        self._wait(lambda: self.configured, "the server asked for its settings")

    def check(self, paths: list[Path]) -> dict[Path, list[dict[str, Any]]]:
        """Open the files and return the diagnostics the server publishes for each."""
        with self.changed:
            for path in paths:
                self.diagnostics.pop(path.as_uri(), None)
        for path in paths:
            document = {"uri": path.as_uri(), "languageId": "yaml", "version": 1, "text": path.read_text("utf-8")}
            self.notify("textDocument/didOpen", {"textDocument": document})
        self._wait(lambda: all(p.as_uri() in self.diagnostics for p in paths), f"diagnostics for {len(paths)} files")
        return {path: self.diagnostics[path.as_uri()] for path in paths}

    def request(self, method: str, params: object) -> Any:
        id = next(self.ids)
        self._send({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        self._wait(lambda: id in self.responses, f"the answer to {method}")
        return self.responses.pop(id).get("result")

    def notify(self, method: str, params: object) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def stop(self) -> None:
        """Shut down as a client does; kill the process when it does not go."""
        with contextlib.suppress(Exception):
            if self.process.poll() is None:
                self.request("shutdown", None)
                self.notify("exit", None)
                self.process.wait(5)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.reader.join(5)  # it reads to the end of the server's output, then stops
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        assert self.process.stdin is not None
        with self.writing:
            self.process.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            self.process.stdin.flush()

    def _wait(self, condition: Callable[[], bool], what: str) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: condition() or self.process.poll() is not None, TIMEOUT):
                raise TimeoutError(f"yaml-language-server: no {what} within {TIMEOUT} s (its stderr: {self.log})")
            if not condition():
                raise RuntimeError(
                    f"yaml-language-server exited ({self.process.returncode}) before {what} (its stderr: {self.log})"
                )

    def _read(self) -> None:
        """Read the server's messages: answer its requests, keep answers and diagnostics for the waiting test."""
        stdout = self.process.stdout
        assert stdout is not None
        while True:
            length = None
            while (line := stdout.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("ascii").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if not line or length is None:
                break
            message = json.loads(stdout.read(length))
            if "method" in message and "id" in message:
                self._answer(message)
            with self.changed:
                if message.get("method") == "textDocument/publishDiagnostics":
                    self.diagnostics[message["params"]["uri"]] = message["params"]["diagnostics"]
                elif "method" not in message:
                    self.responses[message["id"]] = message
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def _answer(self, message: dict[str, Any]) -> None:
        """Settings for `workspace/configuration` (the `yaml` section; nothing in the others), null for the rest."""
        sections = []
        if message["method"] == "workspace/configuration":
            sections = [item.get("section") for item in message["params"]["items"]]
        result = [self.settings if section == "yaml" else {} for section in sections] if sections else None
        with contextlib.suppress(OSError):  # the server has gone: the waiting test says so
            self._send({"jsonrpc": "2.0", "id": message["id"], "result": result})
        if "yaml" in sections:
            with self.changed:
                self.configured = True


StartServer = Callable[..., LanguageServer]  # (workspace folder, settings=SETTINGS)


@pytest.fixture
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartServer]:
    """start_server(root, settings) -> a LanguageServer on that workspace folder, stopped after the test."""
    need(shutil.which("node") is not None, "no node on PATH to run yaml-language-server")
    need(
        (YAML_LANGUAGE_SERVER / "bin" / "yaml-language-server").is_file(),
        f"yaml-language-server is not installed in {YAML_LANGUAGE_SERVER.parent.parent} (.ci/run installs it)",
    )
    servers: list[LanguageServer] = []
    logs = tmp_path_factory.mktemp("yaml-language-server")

    def start(root: Path, settings: Mapping[str, Any] = SETTINGS) -> LanguageServer:
        server = LanguageServer(settings, logs / f"stderr-{len(servers)}.log")
        servers.append(server)
        server.initialize(root)
        return server

    yield start
    for server in servers:
        server.stop()


def rule_files(rules: Path) -> list[Path]:
    return sorted(rules.rglob("*.yaml"))


def copy_layout(where: Path) -> Path:
    """rules/ and schemas/ side by side under `where`, as in the repository, so that `../../schemas/` resolves."""
    for name in ("rules", "schemas"):
        shutil.copytree(ROOT / name, where / name)
    return where / "rules"


def shown(diagnostics: list[dict[str, Any]]) -> list[str]:
    return [f"{d['range']['start']['line'] + 1}: {d['message']} ({d.get('source')})" for d in diagnostics]


def schema_lines(diagnostics: list[dict[str, Any]]) -> set[int]:
    """The 1-based lines with a diagnostic from a schema (its source is `yaml-schema: <the schema's title>`)."""
    return {d["range"]["start"]["line"] + 1 for d in diagnostics if str(d.get("source", "")).startswith("yaml-schema")}


def kind_lines(path: Path) -> list[int]:
    """The 1-based line of each document's top-level `kind:` key (the first key of every example document)."""
    text = path.read_text("utf-8")
    lines = [i for i, line in enumerate(text.splitlines(), 1) if line.startswith("kind: ")]
    assert len(lines) == len(list(yaml.safe_load_all(text))), f"{path}: not one `kind:` line per document"
    return lines


def insert_lines(path: Path, before: list[int], text: str) -> list[int]:
    """Insert `text` as a line before each of those lines; return the lines it is on now."""
    lines = path.read_text("utf-8").splitlines(keepends=True)
    for line in sorted(before, reverse=True):
        lines.insert(line - 1, text + "\n")
    path.write_text("".join(lines), "utf-8")
    return [line + i for i, line in enumerate(sorted(before))]


def replace_line(path: Path, line: int, old: str, new: str) -> None:
    lines = path.read_text("utf-8").splitlines(keepends=True)
    assert old in lines[line - 1], f"{path}:{line} has no {old!r}: {lines[line - 1]!r}"
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    path.write_text("".join(lines), "utf-8")


def test_every_document_of_every_rule_file_has_its_schema_line_and_passes_it(start_server: StartServer) -> None:
    files = rule_files(ROOT / "rules")
    for path in files:
        text = path.read_text("utf-8")
        kinds = [document["kind"].lower() for document in yaml.safe_load_all(text)]
        lines = MODELINE.findall(text)
        assert len(lines) == len(kinds), f"{path}: {len(kinds)} documents, {len(lines)} schema lines"
        for kind, line in zip(kinds, lines, strict=True):
            assert line.endswith(f"/schemas/{kind}.schema.json\n"), f"{path}: a {kind} document with {line!r}"

    found = start_server(ROOT).check(files)

    assert {path.relative_to(ROOT): shown(d) for path, d in found.items() if d} == {}


def test_an_unknown_key_in_any_document_of_any_rule_file_is_underlined_on_its_line(
    start_server: StartServer, tmp_path: Path
) -> None:
    """A key no schema has, added to the top of every document: every document is checked, the second Template of
    templates/welcome.yaml as much as the first."""
    rules = copy_layout(tmp_path)
    files = rule_files(rules)
    added = {path: insert_lines(path, kind_lines(path), "no_such_key: 1") for path in files}
    assert len(added[rules / "templates" / "welcome.yaml"]) == 2

    found = start_server(tmp_path).check(files)

    missed = {str(p.relative_to(rules)): sorted(set(lines) - schema_lines(found[p])) for p, lines in added.items()}
    assert {name: lines for name, lines in missed.items() if lines} == {}
    for path, lines in added.items():
        assert schema_lines(found[path]) == set(lines), shown(found[path])


def test_a_misspelt_key_in_the_second_template_and_a_wrong_type_are_underlined_on_their_lines(
    start_server: StartServer, tmp_path: Path
) -> None:
    rules = copy_layout(tmp_path)
    welcome, settings = rules / "templates" / "welcome.yaml", rules / "settings.yaml"
    second = kind_lines(welcome)[1]
    replace_line(welcome, second + 2, "subject:", "subjet:")  # kind, name, subject
    timezone = kind_lines(settings)[0] + 1
    replace_line(settings, timezone, "timezone: Europe/Berlin", "timezone: [Europe/Berlin]")

    found = start_server(tmp_path).check(rule_files(rules))

    assert schema_lines(found[welcome]) == {second, second + 2}, shown(found[welcome])  # subject missing, subjet
    assert any("subjet" in d["message"] for d in found[welcome]), shown(found[welcome])
    assert schema_lines(found[settings]) == {timezone}, shown(found[settings])
    assert "string" in found[settings][0]["message"].lower(), shown(found[settings])
    others = {p.relative_to(rules): shown(d) for p, d in found.items() if d and p not in (welcome, settings)}
    assert others == {}


def test_the_yaml_schemas_mapping_of_editors_md_covers_every_document_without_schema_lines(
    start_server: StartServer, tmp_path: Path
) -> None:
    """The page's `.vscode/settings.json`, as the server's settings, on a copy of the rules without schema lines."""
    page = (ROOT / "docs" / "editors.md").read_text("utf-8")
    blocks = [json.loads(b) for b in re.findall(r"^```json\n(.*?)^```", page, re.S | re.M)]
    (mapping,) = [b["yaml.schemas"] for b in blocks if "yaml.schemas" in b]
    rules = copy_layout(tmp_path)
    files = rule_files(rules)
    added = {}
    for path in files:
        path.write_text(MODELINE.sub("", path.read_text("utf-8")), "utf-8")
        added[path] = insert_lines(path, kind_lines(path), "no_such_key: 1")

    found = start_server(tmp_path, {**SETTINGS, "schemas": mapping}).check(files)

    missed = {str(p.relative_to(rules)): sorted(set(lines) - schema_lines(found[p])) for p, lines in added.items()}
    assert {name: lines for name, lines in missed.items() if lines} == {}
