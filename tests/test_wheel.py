"""The wheel as pip builds it ships the JSON Schemas, as generated, under outreach/schemas/, and the licence, with
this version's metadata (built by a subprocess: `pip wheel`, without network)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest

import outreach
from outreach.rules import schemas
from tests.conftest import ROOT, need

pytestmark = pytest.mark.acceptance


def test_the_wheel_ships_the_schemas_and_the_licence(tmp_path: Path) -> None:
    need(importlib.util.find_spec("hatchling") is not None, "hatchling is not installed (pip install -e '.[dev]')")
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, f"pip wheel failed:\n{build.stdout}\n{build.stderr}"
    wheels = list(tmp_path.glob("outreach-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
        for required in (
            "outreach/schemas/sequence.schema.json",
            "outreach/schemas/draft-07/sequence.schema.json",
            "outreach/cli/__init__.py",
        ):
            assert required in names, f"{required} is not in {wheels[0].name}"
        for rel, text in schemas.all_files().items():
            assert whl.read(f"outreach/schemas/{rel}").decode("utf-8") == text, f"outreach/schemas/{rel} is stale"
        json.loads(whl.read("outreach/schemas/sequence.schema.json"))
        info = f"outreach-{outreach.__version__}.dist-info"
        assert whl.read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
        metadata = HeaderParser().parsestr(whl.read(f"{info}/METADATA").decode("utf-8"))
        assert (metadata["Version"], metadata["License-Expression"]) == (outreach.__version__, "MIT")
        assert "asyncpg>=0.29; extra == 'postgres'" in metadata.get_all("Requires-Dist", [])
        assert not any(r.startswith("asyncpg") and "extra ==" not in r for r in metadata.get_all("Requires-Dist", []))
