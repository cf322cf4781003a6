"""Atomic file writes: a reader of ``path`` sees the old file or the new one, never half of one.

* :func:`atomic_write` -- bytes (or text, UTF-8) to one file;
* :func:`atomic_save` -- the same for a writer that streams into a binary file object
  (``np.savez_compressed``, ``torch.save``, ...);
* :func:`atomic_write_files` -- several files into one folder, all or none.

Each file is written to a hidden temporary file in the target's folder
(``.<name>.<random>.tmp``), flushed and ``fsync``-ed, given its final mode, and renamed over the
target with :func:`os.replace`. On any failure the temporary file is removed and an existing
target is left as it was. The final mode is what ``open(path, "w")`` gives: an existing regular
file keeps its permission bits, a new file gets ``0o666 & ~umask``.

Errors: an ``OSError`` of the write (missing or non-folder parent, no permission, disk full,
...) becomes a :class:`~poseshape.core.errors.FileWriteError` -- a ``PoseshapeError`` that is
still an ``OSError`` -- with a one-line message naming the path, the reason and the errno.
Exceptions of a writer that are not ``OSError`` pass through unchanged.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

from poseshape.core.errors import FileWriteError, PoseshapeError

__all__ = ["atomic_save", "atomic_write", "atomic_write_files"]


# ----------------------------------------------------------------------------- helpers
def _umask() -> int:
    """The process umask. ``os.umask`` can only be read by setting it, so it is set to the
    restrictive ``0o077`` for that instant: a file another thread creates meanwhile gets fewer
    permissions, never more."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _final_mode(path: Path, default: int) -> int:
    """Permission bits ``open(path, "w")`` would leave: an existing regular file's, else ``default``."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return default
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else default


def _write_error(path: Path, exc: OSError) -> FileWriteError:
    """``exc`` (raised while writing ``path``) as a one-line :class:`FileWriteError`."""
    code = exc.errno
    parent = path.parent
    if code == errno.ENOENT and not parent.exists():
        why = f"folder {parent} does not exist"
    elif code == errno.ENOTDIR:
        why = f"{parent} (or a folder above it) is not a folder"
    elif code in (errno.EACCES, errno.EPERM):
        why = f"permission denied (is folder {parent} writable?)"
    elif code == errno.EROFS:
        why = "read-only file system"
    elif code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        why = "no space left on device (disk full or quota exceeded)"
    elif code == errno.EISDIR:
        why = "a folder of that name exists"
    else:
        why = exc.strerror or str(exc) or type(exc).__name__
    tag = f" [errno {code} {errno.errorcode.get(code, '?')}]" if code is not None else ""
    msg = f"{path}: cannot write file: {why}{tag}"
    err = FileWriteError(msg.replace("\r", " ").replace("\n", " "))
    err.errno, err.strerror, err.filename = code, exc.strerror, str(path)
    return err


def _wrap(path: Path, exc: BaseException) -> BaseException | None:
    """The :class:`FileWriteError` to raise for ``exc`` (an ``OSError`` not yet wrapped), else None."""
    if isinstance(exc, OSError) and not isinstance(exc, FileWriteError):
        return _write_error(path, exc)
    return None


def _unlink_quietly(p: str | os.PathLike | None) -> None:
    if p is None:
        return
    try:
        os.unlink(p)
    except OSError:
        pass


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every platform / FS allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_temp(path: Path, writer: Callable[[BinaryIO], object], mode: int) -> Path:
    """Write ``writer``'s output to a new hidden temporary file next to ``path`` (flushed,
    fsync-ed, chmod-ed to ``mode``); removed again on failure."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:200]}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _write_error(path, e) from e
    try:
        try:
            fh = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            raise
        with fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), mode)
        if not hasattr(os, "fchmod"):
            os.chmod(tmp, mode)
    except BaseException as e:
        _unlink_quietly(tmp)
        wrapped = _wrap(path, e)
        if wrapped is not None:
            raise wrapped from e
        raise
    return Path(tmp)


def _as_bytes(data: bytes | bytearray | memoryview | str, what: str) -> bytes | bytearray | memoryview:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    raise TypeError(f"{what}: expected bytes or str, got {type(data).__name__}")


# ----------------------------------------------------------------------------- one file
def atomic_save(path: str | os.PathLike, writer: Callable[[BinaryIO], object]) -> Path:
    """Replace ``path`` atomically with what ``writer(file)`` writes into a binary file object
    (which it must not close).

    The parent folder must exist. Returns ``path`` as a :class:`~pathlib.Path`.

    Raises:
        FileWriteError: the parent is missing, not a folder or not writable, the disk is full,
            ... (an ``OSError`` of the write, also one raised inside ``writer``); ``path``
            keeps its old content, if any, and no temporary file is left.
        Exception: whatever else ``writer`` raises, unchanged (same guarantees).
    """
    p = Path(path)
    tmp = _write_temp(p, writer, _final_mode(p, 0o666 & ~_umask()))
    try:
        os.replace(tmp, p)
    except BaseException as e:
        _unlink_quietly(tmp)
        wrapped = _wrap(p, e)
        if wrapped is not None:
            raise wrapped from e
        raise
    _fsync_dir(p.parent)
    return p


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Replace ``path`` atomically with ``data`` (``str`` is written as UTF-8).

    Same guarantees and errors as :func:`atomic_save`.
    """
    payload = _as_bytes(data, f"{path}")
    return atomic_save(path, lambda fh: fh.write(payload))


# ----------------------------------------------------------------------------- several files
def _missing_dirs(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    out = []
    p = folder
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out


def _remove_dirs(dirs: Iterable[Path]) -> None:
    for d in dirs:  # deepest first; stops mattering once one is not empty
        try:
            d.rmdir()
        except OSError:
            pass


def atomic_write_files(
    folder: str | os.PathLike, files: Mapping[str, bytes | str], keys: Iterable | None = None
) -> dict:
    """Write ``{file name: bytes}`` into ``folder`` (created if missing), all or none.

    All files are first written to temporary files in ``folder``; only then is each renamed
    over its target, an existing target being kept as a hidden backup (a hard link, else a
    copy) until all renames succeeded. If anything fails, the targets renamed so far are put
    back (their old version, or removed when they are new), the temporary files and backups are
    removed, and so are ``folder`` and the parents this call created. Each file behaves as in
    :func:`atomic_write` (mode, fsync).

    Args:
        folder: the output folder.
        files: plain file names (no folder part) -> content (``str`` is written as UTF-8).
        keys: the keys of the returned dict, one per file in order (default: the file names).

    Returns:
        ``{key: path}``.

    Raises:
        PoseshapeError: ``keys`` does not match ``files`` one to one, or a name is not a plain
            file name.
        FileWriteError: ``folder`` exists and is not a folder, or writing failed (see
            :func:`atomic_save`).
    """
    out = Path(folder)
    names = list(files)
    keys = list(keys) if keys is not None else list(names)
    if len(keys) != len(names) or len(set(keys)) != len(keys):
        raise PoseshapeError(f"{out}: expected {len(names)} distinct keys for the files {names}, got {keys}")
    for name in names:
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
            raise PoseshapeError(f"{out}: {name!r} is not a plain file name")
    payloads = [_as_bytes(files[n], str(out / n)) for n in names]
    if out.exists() and not out.is_dir():
        err = FileWriteError(f"{out}: output path exists and is not a folder")
        err.errno, err.filename = errno.ENOTDIR, str(out)
        raise err
    created = _missing_dirs(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _remove_dirs(created)
        raise _write_error(out / (names[0] if names else "."), e) from e

    default_mode = 0o666 & ~_umask()
    targets = [out / n for n in names]
    temps: list[Path | None] = []  # per target, until it is renamed
    backups: dict[int, Path] = {}  # target index -> hidden hard link / copy of its old version
    replaced: list[int] = []
    target = out
    try:
        for target, payload in zip(targets, payloads):
            temps.append(_write_temp(target, lambda fh, b=payload: fh.write(b), _final_mode(target, default_mode)))
        for k, target in enumerate(targets):
            if os.path.lexists(target):
                bak = target.with_name(f".{target.name}.{secrets.token_hex(6)}.bak")
                try:
                    os.link(target, bak, follow_symlinks=False)
                except (OSError, NotImplementedError):  # no hard links here: copy
                    shutil.copy2(target, bak, follow_symlinks=False)
                backups[k] = bak
            os.replace(temps[k], target)
            temps[k] = None
            replaced.append(k)
    except BaseException as exc:
        for k in reversed(replaced):  # put the old versions back
            try:
                if k in backups:
                    os.replace(backups.pop(k), targets[k])
                else:
                    targets[k].unlink()
            except OSError:
                pass
        for t in temps:
            _unlink_quietly(t)
        for b in backups.values():
            _unlink_quietly(b)
        _remove_dirs(created)
        wrapped = _wrap(target, exc)
        if wrapped is not None:
            raise wrapped from exc
        raise
    for b in backups.values():
        _unlink_quietly(b)
    _fsync_dir(out)
    return dict(zip(keys, targets))
