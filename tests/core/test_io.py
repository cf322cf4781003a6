"""poseshape.core.io: atomic writes keep the old file on failure, leave no temporary files, give
the mode ``open(path, "w")`` would, and explain failures in one line naming the path."""

from __future__ import annotations

import errno
import io
import os
import stat

import numpy as np
import pytest

from poseshape.core import io as cio
from poseshape.core.errors import FileWriteError, PoseshapeError
from poseshape.core.io import atomic_save, atomic_write, atomic_write_files


@pytest.fixture
def umask():
    """Set the umask inside a test; the old one comes back afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def _flaky(real, fail_at: int, exc: BaseException):
    """``real`` that raises ``exc`` on its ``fail_at``-th call."""
    calls = []

    def f(*a, **k):
        calls.append(a)
        if len(calls) == fail_at:
            raise exc
        return real(*a, **k)

    return f


# ----------------------------------------------------------------------------- one file
def test_atomic_write_bytes_and_text(tmp_path):
    p = atomic_write(tmp_path / "a.bin", b"\x00\x01")
    assert p == tmp_path / "a.bin" and p.read_bytes() == b"\x00\x01"
    assert atomic_write(str(tmp_path / "a.bin"), "héllo\n").read_bytes() == "héllo\n".encode()
    assert os.listdir(tmp_path) == ["a.bin"]
    with pytest.raises(TypeError, match="bytes or str"):
        atomic_write(tmp_path / "b", 3)
    assert os.listdir(tmp_path) == ["a.bin"]


def test_atomic_save_streams(tmp_path):
    arr = np.arange(12).reshape(3, 4)
    p = atomic_save(tmp_path / "x.npz", lambda fh: np.savez_compressed(fh, a=arr))
    with np.load(p) as z:
        assert np.array_equal(z["a"], arr)
    assert os.listdir(tmp_path) == ["x.npz"]


def test_failing_writer_keeps_old_file(tmp_path):
    p = atomic_write(tmp_path / "f.txt", "old")

    def bad(fh):
        fh.write(b"half a new fi")
        raise RuntimeError("writer broke")

    with pytest.raises(RuntimeError, match="writer broke"):  # not an OSError: passed through
        atomic_save(p, bad)
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]

    def bad_os(fh):
        fh.write(b"half")
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(FileWriteError, match=r"f\.txt: cannot write file: Input/output error \[errno 5 EIO\]"):
        atomic_save(p, bad_os)
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_failing_rename_keeps_old_file(tmp_path, monkeypatch):
    p = atomic_write(tmp_path / "f.txt", "old")
    monkeypatch.setattr(cio.os, "replace", _flaky(os.replace, 1, OSError("rename failed")))
    with pytest.raises(OSError, match="rename failed") as ei:
        atomic_write(p, "new")
    assert isinstance(ei.value, PoseshapeError) and str(p) in str(ei.value)
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_disk_full_is_one_clear_line(tmp_path, monkeypatch):
    p = atomic_write(tmp_path / "f.txt", "old")
    monkeypatch.setattr(cio.os, "fsync", _flaky(os.fsync, 1, OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(FileWriteError) as ei:
        atomic_write(p, "new")
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"{p}: cannot write file: no space left")
    assert "[errno 28 ENOSPC]" in msg
    assert ei.value.errno == errno.ENOSPC and ei.value.filename == str(p)
    assert isinstance(ei.value, PoseshapeError) and isinstance(ei.value, OSError)
    assert isinstance(ei.value.__cause__, OSError)
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_mode_follows_umask(tmp_path, umask, mask, mode):
    umask(mask)
    assert _mode(atomic_write(tmp_path / "new.txt", "x")) == mode
    assert _mode(atomic_save(tmp_path / "new2.bin", lambda fh: fh.write(b"x"))) == mode
    assert _mode(atomic_write_files(tmp_path / "d", {"a": b"1"})["a"]) == mode
    # the umask is left as it was
    assert os.umask(mask) == mask


def test_existing_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    p = atomic_write(tmp_path / "secret.txt", "old")
    os.chmod(p, 0o640)
    assert _mode(atomic_write(p, "new")) == 0o640
    assert _mode(atomic_write_files(tmp_path, {"secret.txt": b"newer"})["secret.txt"]) == 0o640
    assert p.read_text() == "newer"


def test_parent_is_a_file_or_missing(tmp_path):
    f = atomic_write(tmp_path / "file", "x")
    with pytest.raises(
        FileWriteError, match=r"file/out\.txt: cannot write file: .*is not a folder \[errno 20 ENOTDIR\]"
    ):
        atomic_write(f / "out.txt", "y")
    with pytest.raises(FileWriteError, match=r"does not exist \[errno 2 ENOENT\]"):
        atomic_write(tmp_path / "nope" / "out.txt", "y")
    with pytest.raises(FileWriteError, match="a folder of that name exists"):
        atomic_write(tmp_path, "y")  # the target itself is a folder
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_read_only_folder(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    old = atomic_write(d / "f.txt", "old")
    d.chmod(0o555)
    try:
        if os.access(d, os.W_OK):
            pytest.skip("chmod does not stop this user (root) from writing")
        with pytest.raises(
            FileWriteError, match=r"ro/f\.txt: cannot write file: permission denied.*\[errno 13 EACCES\]"
        ):
            atomic_write(old, "new")
        with pytest.raises(FileWriteError, match="permission denied"):
            atomic_write_files(d, {"g.txt": b"new"})
    finally:
        d.chmod(0o755)
    assert old.read_text() == "old" and os.listdir(d) == ["f.txt"]


def test_permission_denied_message(tmp_path, monkeypatch):
    """The read-only-folder message even where the test runs as root (chmod ineffective)."""
    old = atomic_write(tmp_path / "f.txt", "old")

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path))

    monkeypatch.setattr(cio.tempfile, "mkstemp", denied)
    with pytest.raises(
        FileWriteError,
        match=r"f\.txt: cannot write file: permission denied \(is folder .* writable\?\) \[errno 13 EACCES\]",
    ):
        atomic_write(old, "new")
    with pytest.raises(FileWriteError, match="permission denied"):
        atomic_write_files(tmp_path / "sub", {"g.txt": b"new"})
    assert old.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


# ----------------------------------------------------------------------------- several files
def test_write_files_creates_folder_and_keys(tmp_path):
    out = tmp_path / "a" / "b"
    got = atomic_write_files(out, {"x.txt": b"1", "y.json": "{}"}, keys=["x", "y"])
    assert got == {"x": out / "x.txt", "y": out / "y.json"}
    assert (out / "x.txt").read_bytes() == b"1" and (out / "y.json").read_text() == "{}"
    assert sorted(os.listdir(out)) == ["x.txt", "y.json"]
    assert atomic_write_files(out, {"x.txt": b"2"}) == {"x.txt": out / "x.txt"}
    assert (out / "x.txt").read_bytes() == b"2" and sorted(os.listdir(out)) == ["x.txt", "y.json"]


def test_write_files_bad_arguments(tmp_path):
    f = atomic_write(tmp_path / "file", "x")
    with pytest.raises(FileWriteError, match="exists and is not a folder"):
        atomic_write_files(f, {"a": b"1"})
    with pytest.raises(PoseshapeError, match="distinct keys"):
        atomic_write_files(tmp_path / "o", {"a": b"1", "b": b"2"}, keys=["k"])
    for name in ("sub/a", "..", ""):
        with pytest.raises(PoseshapeError, match="plain file name"):
            atomic_write_files(tmp_path / "o", {name: b"1"})
    assert os.listdir(tmp_path) == ["file"]


def _old_folder(tmp_path):
    out = tmp_path / "out"
    atomic_write_files(out, {"a.txt": b"old a", "b.txt": b"old b"})
    return out


def _assert_old(out):
    assert sorted(os.listdir(out)) == ["a.txt", "b.txt"]  # no temporary file or backup left
    assert (out / "a.txt").read_bytes() == b"old a" and (out / "b.txt").read_bytes() == b"old b"


def test_write_files_failure_while_writing_keeps_old_versions(tmp_path, monkeypatch):
    out = _old_folder(tmp_path)
    monkeypatch.setattr(cio.os, "fsync", _flaky(os.fsync, 2, OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(FileWriteError, match=r"b\.txt: cannot write file: no space left.*\[errno 28 ENOSPC\]"):
        atomic_write_files(out, {"a.txt": b"new a", "b.txt": b"new b", "c.txt": b"new c"})
    _assert_old(out)


@pytest.mark.parametrize("fail_at", [2, 3])
def test_write_files_failure_while_renaming_restores_old_versions(tmp_path, monkeypatch, fail_at):
    out = _old_folder(tmp_path)
    monkeypatch.setattr(cio.os, "replace", _flaky(os.replace, fail_at, OSError(errno.EIO, "I/O error")))
    with pytest.raises(FileWriteError, match=r"cannot write file: I/O error \[errno 5 EIO\]"):
        atomic_write_files(out, {"a.txt": b"new a", "b.txt": b"new b", "c.txt": b"new c"})
    _assert_old(out)  # a.txt (and b.txt) renamed, then put back; c.txt never appears


def test_write_files_interrupted_restores_old_versions(tmp_path, monkeypatch):
    out = _old_folder(tmp_path)
    monkeypatch.setattr(cio.os, "replace", _flaky(os.replace, 2, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        atomic_write_files(out, {"a.txt": b"new a", "b.txt": b"new b"})
    _assert_old(out)


def test_write_files_failure_removes_the_folders_it_created(tmp_path, monkeypatch):
    monkeypatch.setattr(cio.os, "fsync", _flaky(os.fsync, 2, OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(FileWriteError, match="no space left"):
        atomic_write_files(tmp_path / "new" / "deeper", {"a.txt": b"1", "b.txt": b"2"})
    assert os.listdir(tmp_path) == []


def test_write_files_without_hard_links_copies_the_backup(tmp_path, monkeypatch):
    out = _old_folder(tmp_path)

    def no_link(*a, **k):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(cio.os, "link", no_link)
    monkeypatch.setattr(cio.os, "replace", _flaky(os.replace, 2, OSError(errno.EIO, "I/O error")))
    with pytest.raises(FileWriteError):
        atomic_write_files(out, {"a.txt": b"new a", "b.txt": b"new b"})
    _assert_old(out)
    monkeypatch.undo()
    monkeypatch.setattr(cio.os, "link", no_link)
    atomic_write_files(out, {"a.txt": b"new a", "b.txt": b"new b"})
    assert sorted(os.listdir(out)) == ["a.txt", "b.txt"] and (out / "b.txt").read_bytes() == b"new b"


def test_writer_gets_a_binary_file(tmp_path):
    seen = []
    atomic_save(tmp_path / "w", lambda fh: seen.append(isinstance(fh, io.BufferedIOBase)) or fh.write(b"z"))
    assert seen == [True] and (tmp_path / "w").read_bytes() == b"z"
