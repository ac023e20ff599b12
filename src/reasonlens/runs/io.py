"""Crash-safe file primitives and the validated readers of every on-disk format.

Writing: atomic replace, checksummed JSON-lines appends, atomic publication of a whole folder, an exclusive
run lock. Reading: files a run folder or model folder holds are untrusted input (they may come from someone
else), so every JSON file and JSON-lines record is read here, through one reader that refuses non-regular files
without blocking (named pipes, devices), bounds the size and nesting depth, and turns every parse failure into
a one-line `UserError` naming the file (and line). `inside` is the one path guard for paths read from a folder.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import socket
import stat
import tempfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from reasonlens.errors import UserError

# Bounds of the validated readers. A manifest or summary is kilobytes; a result record holds one prompt and one
# completion (tens of kilobytes). Anything far larger is a broken or hostile file, refused before it is parsed.
MAX_JSON_FILE_BYTES = 64 * 1024 * 1024
MAX_RECORD_LINE_BYTES = 16 * 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_JSON_INT = 2**53  # counts and indices beyond what a JSON number holds exactly are not ours

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


def with_filename(exc: OSError, path: Path | str) -> OSError:
    """`exc` carrying `path` as its file name (a failed write() or fsync() names no file), for the one-line error."""
    if exc.filename is None and exc.errno is not None:
        return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))
    return exc


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise with_filename(exc, path) from None
    try:
        os.fchmod(fd, shared_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise with_filename(exc, path) from None
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

    Reading stops at the first torn or corrupt line: everything after it is treated as not written. A line
    longer than `MAX_RECORD_LINE_BYTES` is refused (UserError) rather than read into memory, and so is a
    `path` that is not a regular file.
    """
    records: list[dict] = []
    valid = 0
    if not os.path.lexists(path):
        return records, 0
    with open_regular(path, "results file") as handle:
        for lineno, raw in enumerate(iter(lambda: handle.readline(MAX_RECORD_LINE_BYTES + 1), b""), start=1):
            if len(raw) > MAX_RECORD_LINE_BYTES:
                raise UserError(
                    f"{path}: line {lineno} is longer than {MAX_RECORD_LINE_BYTES // 2**20} MiB "
                    "(not a reasonlens results file?)"
                )
            if not raw.endswith(b"\n"):
                break
            try:
                record = parse_json(raw, f"{path}: line {lineno}")
            except UserError:
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
        _, valid = read_checked_jsonl(self.path)  # refuses a non-regular file, so neither open below can block
        try:
            if self.path.exists() and self.path.stat().st_size != valid:
                with open(self.path, "r+b") as handle:
                    handle.truncate(valid)
            self._handle = open(self.path, "ab")
        except OSError as exc:
            raise with_filename(exc, self.path) from None

    def append(self, records: list[dict]) -> None:
        if not records:
            return
        try:
            self._handle.write(b"".join(encode_record(r) for r in records))
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            # A partly written line is a torn tail: the next run truncates it, so the file stays consistent.
            raise with_filename(exc, self.path) from None

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "CheckedAppender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_records(path: Path) -> Iterator[dict]:
    records, _ = read_checked_jsonl(path)
    yield from records


# -- validated reading -------------------------------------------------------------------------------------------


def open_regular(path: str | Path, what: str = "file"):
    """`path` opened for binary reading, refused (UserError) unless it is a regular file.

    Opened non-blocking first, so a named pipe or a device in place of a file is refused instead of hanging.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what} ({exc.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UserError(f"{path}: {what} is not a regular file ({_file_kind(mode)})")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a plain file"


def read_bounded(path: str | Path, what: str = "file", max_bytes: int = MAX_JSON_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; UserError naming the file otherwise."""
    with open_regular(path, what) as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise UserError(f"{path}: cannot read {what} ({exc.strerror})") from None
    if len(data) > max_bytes:
        raise UserError(f"{path}: {what} is larger than {max_bytes // 2**20} MiB")
    return data


def parse_json(data: bytes | str, where: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value in `data`: strict UTF-8, nesting at most `max_depth`, no lone surrogates.

    NaN/Infinity constants are accepted (Python's own writers emit them); the format readers check that the
    numbers they use are finite.

    Every failure (syntax, 100k-deep nesting, a 5,000-digit integer) is a UserError that starts with `where`.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError:
        raise UserError(f"{where}: not valid UTF-8") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise UserError(f"{where}: JSON nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # an integer too long to convert
        reason = "an integer has too many digits" if "digits" in str(exc) else str(exc).splitlines()[0][:100]
        raise UserError(f"{where}: invalid JSON ({reason})") from None
    _check_tree(value, where, max_depth)
    return value


def _check_tree(value: Any, where: str, max_depth: int) -> None:
    """Nesting depth and strings (no lone surrogates: they cannot be written back as UTF-8), without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > max_depth:
                raise UserError(f"{where}: JSON nested deeper than {max_depth} levels")
            children = list(item.items()) if isinstance(item, dict) else [(None, v) for v in item]
            for key, child in children:
                if key is not None:
                    _check_string(key, where)
                stack.append((child, depth + 1))
        elif isinstance(item, str):
            _check_string(item, where)


def _check_string(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{where}: string holds an unpaired surrogate (\\ud800-\\udfff escape)") from None


def read_json_object(path: str | Path, what: str = "JSON file", max_bytes: int = MAX_JSON_FILE_BYTES) -> dict[str, Any]:
    """The one reader of a JSON-object file (manifest, summary, card, config): bounded, regular files only."""
    value = parse_json(read_bounded(path, what, max_bytes), f"{path}: {what}")
    if not isinstance(value, dict):
        raise UserError(f"{path}: {what} must be a JSON object, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


# -- field checks shared by the format readers ---------------------------------------------------------------------


def field_error(where: str, key: str, expected: str, value: Any) -> UserError:
    shown = json.dumps(value, ensure_ascii=False, default=str)
    return UserError(f"{where}: field '{key}' must be {expected}, got {shown[:60]}")


def check_fields(obj: dict[str, Any], where: str, spec: dict[str, str]) -> dict[str, Any]:
    """Check the types of the fields of `obj` that `spec` names; a name ending in '?' may be missing or null.

    Kinds: str, int (>= 0), number (finite), bool, list, dict, layers (list of ints and 'final').
    """
    for name, kind in spec.items():
        optional = name.endswith("?")
        key = name.rstrip("?")
        if key not in obj or obj[key] is None:
            if optional:
                continue
            raise UserError(f"{where}: field '{key}' is missing")
        value = obj[key]
        if not _KIND_CHECKS[kind][0](value):
            raise field_error(where, key, _KIND_CHECKS[kind][1], value)
    return obj


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_KIND_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (lambda v: _is_int(v) and 0 <= v <= MAX_JSON_INT, f"an integer in 0..{MAX_JSON_INT}"),
    "number": (lambda v: (_is_int(v) or isinstance(v, float)) and math.isfinite(v), "a finite number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
    "layers": (
        lambda v: isinstance(v, list) and all(_is_int(x) or isinstance(x, str) for x in v),
        "a list of layer indices or names",
    ),
}


# -- the path guard ------------------------------------------------------------------------------------------------


def inside(root: str | Path, relative: str | Path, what: str = "path") -> Path:
    """`root/relative` when it resolves (symlinks followed) to a regular file inside `root`; else UserError.

    The one guard for every path that a run folder names or holds: an absolute path, `..` or a symlink that
    leads out of the folder is refused, so a folder from someone else cannot make reasonlens read (and, e.g.,
    embed in a report) a file elsewhere on this machine.
    """
    root_resolved = Path(root).resolve()
    text = str(relative)
    if "\x00" in text:
        raise UserError(f"{root}: {what} {text[:80]!r} holds a NUL byte")
    candidate = Path(root) / relative
    resolved = candidate.resolve()
    if Path(relative).is_absolute() or (resolved != root_resolved and root_resolved not in resolved.parents):
        raise UserError(f"{root}: {what} {text[:200]!r} points outside the folder; refused")
    return candidate


# -- atomic publication of a folder --------------------------------------------------------------------------------

_STAGING = re.compile(r"^\.(?P<target>.+)\.(?P<kind>new|old)(?P<pid>\d+)-(?P<host>[0-9a-f]{8})$")


def _staging_name(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{kind}{os.getpid()}-{_host_tag()}"


def remove_stale_staging(target: Path) -> None:
    """Remove staging folders of `target` left by killed publishers (pid dead on this host)."""
    parent = Path(target).parent
    if not parent.is_dir():
        return
    for entry in os.scandir(parent):
        match = _STAGING.fullmatch(entry.name)
        if (
            match is None
            or match["target"] != Path(target).name
            or match["host"] != _host_tag()
            or _process_alive(int(match["pid"]))
            or not entry.is_dir(follow_symlinks=False)
        ):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)


@contextmanager
def publish_directory(target: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `target`; when the block ends without an error, the staging folder
    replaces `target` as one unit (readers see the old folder or the new one, never a mix of both). When the
    block raises (an error, Ctrl-C, SIGTERM), the staging folder is deleted and `target` is left as it was."""
    target = Path(target)
    remove_stale_staging(target)
    staging = _staging_name(target, "new")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        staging.mkdir(parents=True)
    except OSError as exc:
        raise with_filename(exc, staging) from None
    try:
        yield staging
        _fsync_dir(staging)
        _swap(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _swap(staging: Path, target: Path) -> None:
    if not os.path.lexists(target):
        os.rename(staging, target)
    elif _rename_exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the old contents
    else:  # no atomic exchange here: move the old folder aside, move the new one in, then delete the old one
        old = _staging_name(target, "old")
        os.rename(target, old)
        os.rename(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(target.parent)


def _rename_exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


# -- the run lock ----------------------------------------------------------------------------------------------------

LOCK_NAME = ".lock"


class RunLock:
    """An exclusive advisory lock (flock) on `FOLDER/.lock`, held until `release()` or the process ends.

    A second writer of the same folder is refused with a message naming the holder's pid. The lock file stays
    (deleting it would let two writers lock two different files); it is not part of the run's data.
    """

    def __init__(self, folder: str | Path, option: str = "--out"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        try:
            fd = os.open(
                self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o644
            )
        except OSError as exc:
            raise with_filename(exc, self.path) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UserError(f"{self.path}: lock file is not a regular file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                raise UserError(
                    f"{option} {self.folder}: another reasonlens process (pid {holder}) is writing this "
                    "run; wait for it to finish or use another folder"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()
