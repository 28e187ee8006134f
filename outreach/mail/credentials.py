"""Secrets named by Settings: an environment variable (`*_env`) or a file (`*_file`), never the YAML itself.

A file path may start with `$CREDENTIALS_DIRECTORY`, where systemd puts a unit's credentials
(`LoadCredential=`). Values are read when a transport or poller is built, so a missing secret is
reported at start (and at SIGHUP), not at the first send.
"""

from __future__ import annotations

import os


class MissingSecret(Exception):
    """A secret Settings names is not there: the variable is unset or empty, or the file cannot be read."""


def read(what: str, *, env: str | None = None, file: str | None = None, literal: str | None = None) -> str | None:
    """The secret's text (a file's content without its trailing newline), or None when Settings names none.

    `what` says which secret in errors, e.g. "the SMTP password". Raises MissingSecret.
    """
    if literal is not None:
        return literal
    if env:
        value = os.environ.get(env)
        if not value:
            raise MissingSecret(f"{what}: the environment variable {env} is not set")
        return value
    if file:
        path = file.replace("$CREDENTIALS_DIRECTORY", os.environ.get("CREDENTIALS_DIRECTORY", ""))
        try:
            with open(path, encoding="utf-8") as handle:
                value = handle.read().rstrip("\r\n")
        except OSError as exc:
            raise MissingSecret(f"{what}: cannot read {path} ({exc.strerror or exc})") from None
        if not value:
            raise MissingSecret(f"{what}: {path} is empty")
        return value
    return None
