"""Which holiday countries and subdivisions python-holidays knows, for `validate`, cached on disk.

Finding a country's subdivisions imports python-holidays and that country's module, which imports every
country's (about 0.2 s, most of what `outreach validate` of a small rule set costs). The answer depends only on
the installed python-holidays, so it is kept in a small JSON file in the user's cache directory
(`$XDG_CACHE_HOME/outreach/`, else `~/.cache/outreach/`), keyed by where that package is and when it was
installed: a new python-holidays reads its own answers afresh. A cache that cannot be read or written (a
read-only home under systemd, say) costs only the time.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path

_MEMORY: dict[str, tuple[str, ...] | None] = {}


def subdivisions(country: str) -> tuple[str, ...] | None:
    """The subdivisions python-holidays knows for a country code (alpha-2), or None for an unknown country."""
    if country in _MEMORY:
        return _MEMORY[country]
    path = _cache_file()
    cached = _read(path) if path is not None else {}
    if country in cached:
        value = cached[country]
        found = None if value is None else tuple(value)
    else:
        found = _look_up(country)
        if path is not None:
            _write(path, {**cached, country: None if found is None else list(found)})
    _MEMORY[country] = found
    return found


def remember(answers: dict[str, tuple[str, ...] | None]) -> None:
    """Answers found in another process (validate --jobs)."""
    _MEMORY.update(answers)


def _look_up(country: str) -> tuple[str, ...] | None:
    """Reads the registry and imports only that country's module (holidays.list_supported_countries() imports all)."""
    import importlib

    from holidays import registry

    for module, (class_name, alpha2, *_rest) in registry.COUNTRIES.items():
        if alpha2 == country:
            cls = getattr(importlib.import_module(f"holidays.countries.{module}"), class_name)
            return tuple(str(s) for s in getattr(cls, "subdivisions", ()))
    return None


def _cache_file() -> Path | None:
    spec = importlib.util.find_spec("holidays")
    if spec is None or not spec.origin:
        return None
    try:
        st = os.stat(spec.origin)
    except OSError:
        return None
    key = hashlib.sha256(f"{spec.origin}\0{st.st_mtime_ns}\0{st.st_size}".encode()).hexdigest()[:16]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "outreach" / f"holidays-{key}.json"


def _read(path: Path) -> dict[str, list[str] | None]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        k: v
        for k, v in data.items()
        if isinstance(k, str) and (v is None or (isinstance(v, list) and all(isinstance(s, str) for s in v)))
    }


def _write(path: Path, data: dict[str, list[str] | None]) -> None:
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".holidays-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, sort_keys=True)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
