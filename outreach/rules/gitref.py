"""Rule files as they are at a git ref, read from the repository's objects (no checkout, no working tree change)."""

from __future__ import annotations

import subprocess


class GitRefError(Exception):
    """The ref, the repository or the rule directory at the ref cannot be read; the message says which."""


def _git(cwd: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, check=False)
    except FileNotFoundError:
        raise GitRefError("git is not installed (plan --base reads the rules at a ref with git)") from None


def resolve(rules_dir: str, ref: str) -> tuple[str, str, str]:
    """(repository top directory, the rule directory's path in it, the ref's commit id)."""
    where = _git(rules_dir, "rev-parse", "--show-toplevel", "--show-prefix")
    if where.returncode != 0:
        raise GitRefError(f"{rules_dir} is not in a git repository: {where.stderr.decode().strip()}")
    top, prefix = [*where.stdout.decode().splitlines(), ""][:2]
    if ref.startswith("-"):
        raise GitRefError(f"--base {ref!r} is not a git ref")
    commit = _git(top, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if commit.returncode != 0:
        raise GitRefError(f"--base {ref!r} is not a commit, branch or tag of the repository (git fetch it first?)")
    return top, prefix.rstrip("/"), commit.stdout.decode().strip()


def read_texts(rules_dir: str, ref: str) -> tuple[str, dict[str, str]]:
    """(commit id, {"REF:path": text}) of every *.yaml / *.yml under the rule directory at `ref`.

    Paths are the repository's (as `git show REF:path` takes them). Hidden files
    and directories are skipped, as `outreach validate` skips them on disk.
    """
    top, prefix, commit = resolve(rules_dir, ref)
    label = prefix or "."
    if prefix:
        kind = _git(top, "cat-file", "-t", f"{commit}:{prefix}")
        if kind.returncode != 0 or kind.stdout.decode().strip() != "tree":
            raise GitRefError(f"the rule directory {label}/ did not exist at {ref} ({commit[:8]})")
    listing = _git(top, "ls-tree", "-r", "-z", "--full-tree", commit, *([f"{prefix}/"] if prefix else []))
    if listing.returncode != 0:
        raise GitRefError(f"cannot list {label} at {ref}: {listing.stderr.decode().strip()}")
    blobs: list[tuple[str, str]] = []
    for entry in listing.stdout.decode("utf-8", "surrogateescape").split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        mode, kind_, oid = meta.split()
        inside = path[len(prefix) + 1 :] if prefix else path
        parts = inside.split("/")
        if kind_ != "blob" or mode == "120000" or any(p.startswith(".") for p in parts):
            continue  # symbolic links and submodules are not read; hidden ones are skipped as on disk
        if parts[-1].endswith((".yaml", ".yml")):
            blobs.append((path, oid))
    blobs.sort()
    texts: dict[str, str] = {}
    batch = _git(top, "cat-file", "--batch", stdin="".join(f"{oid}\n" for _, oid in blobs).encode())
    out, at = batch.stdout, 0
    for path, _oid in blobs:
        header_end = out.find(b"\n", at)
        header = out[at:header_end].split()
        if batch.returncode != 0 or len(header) != 3:
            raise GitRefError(f"cannot read {ref}:{path}: {batch.stderr.decode().strip() or 'git cat-file failed'}")
        size = int(header[2])
        texts[f"{ref}:{path}"] = out[header_end + 1 : header_end + 1 + size].decode("utf-8", "replace")
        at = header_end + 1 + size + 1
    if not texts:
        raise GitRefError(f"no *.yaml or *.yml rule files in {label}/ at {ref} ({commit[:8]})")
    return commit, texts
