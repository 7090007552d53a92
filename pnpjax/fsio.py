"""Careful file I/O: bounded reads of regular files only, atomic writes, stale temp clean-up.

* ``read_regular(path, max_bytes)`` opens with O_NONBLOCK and checks ``fstat`` before reading: a
  FIFO, a device or a directory where a file is expected is refused instead of hanging, and a file
  larger than the limit is refused before a byte is read.
* Temporary entries are named ``.<target>.tmp-<pid>-<random>`` beside their target. A writer
  killed with ``kill -9`` leaves one behind; ``clean_stale(target)`` removes those whose pid is no
  longer alive (never a live writer's), and every atomic write of the target calls it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any
from collections.abc import Callable

from pnpjax.errors import InputError, PnpjaxError

MiB = 1 << 20
MAX_META_BYTES = 16 * MiB  # pnpjax.json, config.json, layout files


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def check_regular(path: Path, what: str, error: type[PnpjaxError] = InputError) -> os.stat_result:
    """stat() of an existing regular file (symlinks followed), else one-line `error`."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except OSError as e:
        raise error(f"cannot read {what} {path}: {_one_line(e)}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a directory"
            if stat.S_ISDIR(st.st_mode)
            else "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "not a regular file"
        )
        raise error(f"{what} {path} is {kind}; expected a regular file")
    return st


def read_regular(path: str | os.PathLike, what: str, max_bytes: int, error: type[PnpjaxError] = InputError) -> bytes:
    """The bytes of a regular file of at most max_bytes; anything else is a one-line `error`."""
    path = Path(path)
    check_regular(path, what, error)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise error(f"cannot read {what} {path}: {_one_line(e)}") from None
    try:
        st = os.fstat(fd)  # the file actually opened (it may have been swapped since the stat)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {path} is not a regular file")
        if st.st_size > max_bytes:
            raise error(f"{what} {path} is {st.st_size:,} bytes, more than the limit of {max_bytes:,}")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise error(f"cannot read {what} {path}: {_one_line(e)}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise error(f"{what} {path} is more than the limit of {max_bytes:,} bytes")
    return data


def read_text(
    path: str | os.PathLike, what: str, max_bytes: int, error: type[PnpjaxError] = InputError, encoding: str = "utf-8"
) -> str:
    data = read_regular(path, what, max_bytes, error)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise error(f"{what} {path} is not {encoding} text (byte {e.start})") from None


# --- temporary entries -----------------------------------------------------------------------------


def temp_prefix(target: Path) -> str:
    return f".{target.name}.tmp-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except OSError:
        return True
    return True


def clean_stale(target: Path) -> list[Path]:
    """Remove `.<target>.tmp-<pid>-*` siblings of target left by dead processes; returns them."""
    parent, head = target.parent, f".{target.name}.tmp-"
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        if not p.name.startswith(head):
            continue
        pid = p.name[len(head) :].split("-", 1)[0]
        if not pid.isdigit() or _pid_alive(int(pid)):
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def make_temp_dir(target: Path, error: type[PnpjaxError] = InputError) -> Path:
    """An empty temp directory beside target (its parent created), stale ones cleaned first."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(target)
        return Path(tempfile.mkdtemp(prefix=temp_prefix(target), dir=target.parent))
    except OSError as e:
        raise error(f"cannot write {target}: {_one_line(e)}") from None


def atomic_write(path: Path, write: Callable[[str], None], error: type[PnpjaxError] = InputError) -> None:
    """write(tmp) then rename to path; a path that cannot be written is a one-line `error`."""
    try:
        if path.is_dir():
            raise OSError(errno.EISDIR, "is a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(path)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=path.suffix, dir=path.parent)
        os.close(fd)
        try:
            write(tmp)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise error(f"cannot write {path}: {_one_line(e)}") from None


# --- JSON ------------------------------------------------------------------------------------------


def _reject_constant(token: str):
    raise ValueError(f"{token} is not a finite number")


def parse_json(data: bytes | str, what: str, error: type[PnpjaxError] = InputError, **kwargs) -> Any:
    """Strict JSON (no NaN/Infinity tokens); nesting too deep or bad syntax is one line."""
    try:
        return json.loads(data, parse_constant=_reject_constant, **kwargs)
    except RecursionError:
        raise error(f"{what} is nested too deeply") from None
    except UnicodeDecodeError as e:
        raise error(f"{what} is not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise error(f"{what} is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except ValueError as e:
        raise error(f"{what}: {(str(e).splitlines() or ['bad value'])[0][:200]}") from None


def read_json(
    path: str | os.PathLike, what: str, max_bytes: int = MAX_META_BYTES, error: type[PnpjaxError] = InputError, **kwargs
) -> Any:
    data = read_regular(path, what, max_bytes, error)
    return parse_json(data, f"{what} {path}", error, **kwargs)


def layout_file_text(path: Path, error: type[PnpjaxError]) -> str:
    """A layout file's text (UTF-8, an optional BOM removed), size and type checked."""
    text = read_text(path, "layout file", MAX_META_BYTES, error)
    return text[1:] if text.startswith("\ufeff") else text
