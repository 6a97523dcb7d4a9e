"""Playbook files (YAML, the source of truth), their version rows in DuckDB, and git commits."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import duckdb
import orjson
import yaml
from pydantic import ValidationError

from memkit.canonical import canonical_json, content_hash
from memkit.errors import PlaybookInvalid, PlaybookNotFound, UnsafePath
from memkit.model import Operation, Playbook

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def check_name(name: str) -> str:
    if not NAME.match(name) or ".." in name:
        raise UnsafePath(f"playbook name {name!r} must be letters, digits, '.', '_' or '-' (at most 64)")
    return name


def playbook_path(playbooks_dir: Path, name: str) -> Path:
    return playbooks_dir / f"{check_name(name)}.yaml"


class _Dumper(yaml.SafeDumper):
    pass


def _repr_list(dumper, data):
    flow = all(isinstance(x, (str, int, float)) for x in data) and len(data) > 0
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _repr_list)


def to_yaml(playbook: Playbook) -> str:
    data = {"name": playbook.name, "version": playbook.version,
            "items": [i.model_dump(mode="json", exclude_none=True) for i in playbook.items]}
    header = "# memkit playbook. Edit by hand if you like: the next distill records the edit as a version.\n"
    return header + yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def load(path: Path, name: str) -> Playbook:
    """The playbook in `path`, or an empty one of that name when the file does not exist yet."""
    if not path.exists():
        return Playbook(name=name)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise PlaybookInvalid(f"{path}{f' line {mark.line + 1}' if mark else ''}: not valid YAML") from None
    if not isinstance(data, dict):
        raise PlaybookInvalid(f"{path}: expected a mapping with name, version and items")
    try:
        pb = Playbook.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise PlaybookInvalid(f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    ids = [i.id for i in pb.items]
    if len(ids) != len(set(ids)):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise PlaybookInvalid(f"{path}: item id {dup} appears twice")
    return pb


def content_hash_of(playbook: Playbook) -> str:
    return content_hash(playbook.content())


# ---------------------------------------------------------------- versions in DuckDB


def latest_version(con: duckdb.DuckDBPyConnection, name: str) -> Optional[int]:
    return con.execute("SELECT max(version) FROM playbook_versions WHERE playbook = ?", [name]).fetchall()[0][0]


def behind(con, name: str, on_disk: Optional[Playbook]) -> bool:
    """Whether the playbook file (`on_disk`, loaded; None when there is no file) is missing, or at an
    older version than the bank's latest: a command was killed between recording a version and
    writing its file. Readers use the version row then; the next writer restores the file."""
    latest = latest_version(con, name)
    if latest is None:
        return False
    if on_disk is None:
        return True
    versions = {r[0] for r in con.execute("SELECT version FROM playbook_versions WHERE playbook = ? AND content_hash = ?",
                                          [name, content_hash_of(on_disk)]).fetchall()}
    return bool(versions) and latest not in versions


def record_version(con, playbook: Playbook, parent: Optional[int], ops: list[Operation]) -> None:
    summary = summarize(ops)
    con.execute(
        "INSERT INTO playbook_versions VALUES (?, ?, ?, ?, ?, ?, ?, NULL, now())",
        [playbook.name, playbook.version, parent, content_hash_of(playbook),
         orjson.dumps([o.model_dump(exclude_none=True) for o in ops]).decode(), summary,
         canonical_json(playbook.content()).decode()],
    )


def set_git_commit(con, name: str, version: int, commit: str) -> None:
    con.execute("UPDATE playbook_versions SET git_commit = ? WHERE playbook = ? AND version = ?", [commit, name, version])


def version_content(con, name: str, version: int) -> Playbook:
    rows = con.execute("SELECT content FROM playbook_versions WHERE playbook = ? AND version = ?", [name, version]).fetchall()
    if not rows:
        raise PlaybookNotFound(f"playbook {name!r} has no version {version}")
    pb = Playbook.model_validate(orjson.loads(rows[0][0]))
    pb.version = version
    return pb


def summarize(ops: list[Operation]) -> str:
    counts: dict[str, int] = {}
    for o in ops:
        counts[o.op] = counts.get(o.op, 0) + 1
    return ", ".join(f"{n} {op}" for op, n in counts.items()) or "no changes"


# ---------------------------------------------------------------- git


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def git_commit(path: Path, message: str) -> Optional[str]:
    """Commit just this file when it lives in a git work tree (and is not ignored); return the commit."""
    if shutil.which("git") is None:
        return None
    folder = path.parent
    if _git(folder, "rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
        return None
    if _git(folder, "check-ignore", "-q", path.name).returncode == 0:
        return None
    ident = []
    if _git(folder, "config", "user.email").returncode != 0:
        ident = ["-c", "user.name=memkit", "-c", "user.email=memkit@localhost"]
    if _git(folder, "add", "--", path.name).returncode != 0:
        return None
    done = _git(folder, *ident, "commit", "--quiet", "--no-verify", "-m", message, "--", path.name)
    if done.returncode != 0:
        return None
    return _git(folder, "rev-parse", "HEAD").stdout.strip() or None
