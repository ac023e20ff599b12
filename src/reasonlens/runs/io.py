"""Crash-safe file primitives: atomic replace, checksummed JSON-lines appends."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import tempfile
import zlib
from pathlib import Path
from typing import Any, Iterator

# Temp files of `atomic_write_bytes` are named `.<target>.rl<pid>-<host>.<random>.tmp`: the writer's pid and a
# hash of its host name let `remove_stale_temp_files` tell a file left by a killed writer from one that a live
# writer (another process on this machine, or on another machine sharing the folder) is still filling.
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.rl(?P<pid>\d+)-(?P<host>[0-9a-f]{8})\.[A-Za-z0-9_]{8}\.tmp")


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8")).hexdigest()[:8]


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.rl{os.getpid()}-{_host_tag()}."


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a pid this writer could have had: leave the file alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else (EPERM)
        return True
    return True


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Delete the temp files that `atomic_write_bytes` left in `directory` when its process was killed between
    creating and renaming them; returns the paths removed.

    Only names this writer creates are touched, and only when the pid in the name belongs to no live process
    on this host (files of live writers and of other hosts stay). Never follows into subfolders.
    """
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    host = _host_tag()
    for entry in os.scandir(directory):
        match = _TEMP_NAME.fullmatch(entry.name)
        if match is None or match["host"] != host or not entry.is_file(follow_symlinks=False):
            continue
        if _process_alive(int(match["pid"])):
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        removed.append(directory / entry.name)
    return removed


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask (read by setting and restoring it; there is no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def shared_mode(directory: bool = False) -> int:
    """The mode a plain open()/mkdir() would give: 0666/0777 minus the umask (mkstemp/mkdtemp give 0600/0700,
    which would hide runs from colleagues on a shared cluster)."""
    return (0o777 if directory else 0o666) & ~current_umask()


def make_shared(path: Path) -> Path:
    """Give a file written by a library that creates 0600 files (safetensors' save_file) the umask's mode."""
    os.chmod(path, shared_mode(directory=Path(path).is_dir()))
    return Path(path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a torn one.

    The file gets the mode a plain open() would give (0644 under the usual umask 022), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, shared_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode("utf-8"))


def record_crc(record: dict) -> int:
    """CRC32 of the record's canonical JSON, without its `crc` field."""
    body = {k: v for k, v in record.items() if k != "crc"}
    return zlib.crc32(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8"))


def encode_record(record: dict) -> bytes:
    body = {k: v for k, v in record.items() if k != "crc"}
    body["crc"] = record_crc(body)
    return (json.dumps(body, ensure_ascii=False) + "\n").encode("utf-8")


def read_checked_jsonl(path: Path) -> tuple[list[dict], int]:
    """Records whose checksum holds, and the byte length of the valid prefix of the file.

    Reading stops at the first torn or corrupt line: everything after it is treated as not written.
    """
    records: list[dict] = []
    valid = 0
    if not Path(path).exists():
        return records, 0
    with open(path, "rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                break
            if not isinstance(record, dict) or record.get("crc") != record_crc(record):
                break
            records.append(record)
            valid += len(raw)
    return records, valid


class CheckedAppender:
    """Appends checksummed JSON lines after truncating any torn tail; each append is flushed and fsynced."""

    def __init__(self, path: Path):
        self.path = Path(path)
        _, valid = read_checked_jsonl(self.path)
        if self.path.exists() and self.path.stat().st_size != valid:
            with open(self.path, "r+b") as handle:
                handle.truncate(valid)
        self._handle = open(self.path, "ab")

    def append(self, records: list[dict]) -> None:
        if not records:
            return
        self._handle.write(b"".join(encode_record(r) for r in records))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "CheckedAppender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_records(path: Path) -> Iterator[dict]:
    records, _ = read_checked_jsonl(path)
    yield from records
