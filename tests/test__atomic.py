"""fastbp._atomic.write_atomic: a file appears whole or not at all.

The content goes to a temporary file in the target's directory, is flushed
and fsync'ed, then renamed over the target, and the directory is fsync'ed
where the OS allows it.  Any failure on the way (a KeyboardInterrupt
included) removes the temporary and leaves the previous file, or none, under
the target's name; so does a process killed part-way (its temporary may stay
behind).  Checkpoints (tests/test_checkpoint.py) and the benchmark's JSON
(tests/test_bench.py) are saved through it."""

import io
import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from fastbp._atomic import write_atomic

OLD, NEW = b"the previous file, whole", b"the new content: " + bytes(range(256)) * 64


def listing(directory):
    return sorted(os.listdir(directory))


def temporaries(directory):
    return [n for n in listing(directory) if n.startswith(".fastbp-") and n.endswith(".tmp")]


@pytest.mark.parametrize("as_str", [False, True], ids=["Path", "str"])
def test_writes_the_bytes_and_nothing_else(tmp_path, as_str):
    path = tmp_path / "a.bin"
    assert write_atomic(str(path) if as_str else path, lambda f: f.write(NEW)) is None
    assert path.read_bytes() == NEW
    assert listing(tmp_path) == ["a.bin"]


def test_an_empty_write_makes_an_empty_file(tmp_path):
    write_atomic(tmp_path / "empty", lambda f: None)
    assert (tmp_path / "empty").read_bytes() == b""
    assert listing(tmp_path) == ["empty"]


def test_text_mode_writes_utf8(tmp_path):
    text = "δ = P − T ✓\nline two\n"
    seen = {}

    def write(f):
        seen["text"] = isinstance(f, io.TextIOBase)
        seen["encoding"] = f.encoding
        f.write(text)

    write_atomic(tmp_path / "t.json", write, binary=False)
    assert seen == {"text": True, "encoding": "utf-8"}
    assert (tmp_path / "t.json").read_bytes() == text.encode("utf-8")


def test_binary_mode_hands_over_a_binary_file(tmp_path):
    kinds = []
    write_atomic(tmp_path / "b", lambda f: kinds.append(isinstance(f, io.BufferedIOBase)))
    assert kinds == [True]


LOCALE_CHILD = textwrap.dedent("""
    import locale, sys
    from fastbp._atomic import write_atomic
    assert locale.getpreferredencoding(False).lower() in ("ansi_x3.4-1968", "ascii"), \\
        locale.getpreferredencoding(False)
    write_atomic(sys.argv[1], lambda f: f.write("\\u03b4 \\u2713"), binary=False)
""")  # (the child's source is ASCII: the C locale could not decode it otherwise)


def test_text_is_utf8_whatever_the_locale(tmp_path):
    # a child under the C locale, whose own default encoding is ASCII
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), LC_ALL="C", PYTHONUTF8="0",
               PYTHONCOERCECLOCALE="0")
    env.pop("PYTHONIOENCODING", None)
    proc = subprocess.run([sys.executable, "-c", LOCALE_CHILD, str(tmp_path / "t.txt")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "t.txt").read_bytes() == "δ ✓".encode("utf-8")


def test_an_existing_file_is_replaced(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(OLD)
    write_atomic(path, lambda f: f.write(NEW))
    assert path.read_bytes() == NEW
    assert listing(tmp_path) == ["m.npz"]


@pytest.mark.parametrize("existing", [True, False], ids=["over a file", "new file"])
def test_the_target_is_untouched_until_the_new_file_is_complete(tmp_path, existing):
    # while write() runs, the target still holds the previous file (or is
    # absent), and the content goes to a temporary beside it (same directory,
    # so the rename never crosses file systems)
    path = tmp_path / "m.npz"
    if existing:
        path.write_bytes(OLD)
    seen = []

    def write(f):
        f.write(NEW[:100])
        f.flush()
        temps = temporaries(tmp_path)
        seen.append((path.read_bytes() if path.exists() else None,
                     [(tmp_path / t).read_bytes() for t in temps]))
        f.write(NEW[100:])

    write_atomic(path, write)
    (during, temps), = seen
    assert during == (OLD if existing else None)
    assert temps == [NEW[:100]]
    assert path.read_bytes() == NEW
    assert listing(tmp_path) == ["m.npz"]


class Boom(Exception):
    pass


def failing_write(exc):
    def write(f):
        f.write(NEW[:1000])  # part of it written, then the failure
        raise exc
    return write


@pytest.mark.parametrize("existing", [True, False], ids=["over a file", "new file"])
@pytest.mark.parametrize("exc", [Boom("disk on fire"), KeyboardInterrupt(), OSError("disk full")],
                         ids=["an exception", "KeyboardInterrupt", "OSError"])
def test_a_failing_write_keeps_the_previous_file_and_no_temporary(tmp_path, existing, exc):
    path = tmp_path / "m.npz"
    if existing:
        path.write_bytes(OLD)
    with pytest.raises(type(exc)):
        write_atomic(path, failing_write(exc))
    assert listing(tmp_path) == (["m.npz"] if existing else [])
    if existing:
        assert path.read_bytes() == OLD


@pytest.mark.parametrize("step", ["chmod", "fsync", "replace"])
@pytest.mark.parametrize("existing", [True, False], ids=["over a file", "new file"])
def test_a_failure_at_any_step_keeps_the_previous_file_and_no_temporary(tmp_path, monkeypatch,
                                                                         step, existing):
    path = tmp_path / "m.npz"
    if existing:
        path.write_bytes(OLD)

    def broken(*args, **kwargs):
        raise OSError(f"simulated failure of os.{step}")

    monkeypatch.setattr(os, step, broken)
    with pytest.raises(OSError, match=f"simulated failure of os.{step}"):
        write_atomic(path, lambda f: f.write(NEW))
    monkeypatch.undo()
    assert listing(tmp_path) == (["m.npz"] if existing else [])
    if existing:
        assert path.read_bytes() == OLD


def test_the_file_is_flushed_and_fsynced_before_the_rename_then_the_directory(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    path.write_bytes(OLD)
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        kind = "directory" if stat.S_ISDIR(st.st_mode) else "file"
        events.append(("fsync", kind, st.st_ino if kind == "directory" else st.st_size))
        real_fsync(fd)

    def replace(src, dst):
        with open(src, "rb") as f:
            events.append(("replace", os.path.dirname(src), f.read(), os.fspath(dst)))
        real_replace(src, dst)

    def write(f):
        f.write(NEW)
        f.write(b"a short tail")  # (left in the file object's buffer until a flush)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_atomic(path, write)
    monkeypatch.undo()
    content = NEW + b"a short tail"
    assert events == [("fsync", "file", len(content)),  # every byte on disk before the rename
                      ("replace", str(tmp_path), content, str(path)),
                      ("fsync", "directory", os.stat(tmp_path).st_ino)]  # the rename made durable
    assert path.read_bytes() == content


@pytest.mark.parametrize("step", ["open", "fsync"])
def test_a_directory_that_cannot_be_synced_is_no_error(tmp_path, monkeypatch, step):
    # the directory's fsync is best effort (not every OS or file system allows it)
    path = tmp_path / "m.npz"
    real_open, real_fsync = os.open, os.fsync
    opened = []

    def dir_open(p, flags, *args, **kwargs):
        if os.path.isdir(p):
            if step == "open":
                raise PermissionError(f"cannot open directory {p}")
            fd = real_open(p, flags, *args, **kwargs)
            opened.append(fd)
            return fd
        return real_open(p, flags, *args, **kwargs)

    def dir_fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError("fsync of a directory: not supported here")
        real_fsync(fd)

    monkeypatch.setattr(os, "open", dir_open)
    monkeypatch.setattr(os, "fsync", dir_fsync)
    write_atomic(path, lambda f: f.write(NEW))
    monkeypatch.undo()
    assert path.read_bytes() == NEW
    assert listing(tmp_path) == ["m.npz"]
    assert len(opened) == (1 if step == "fsync" else 0)
    for fd in opened:  # the directory's descriptor is closed even so
        with pytest.raises(OSError):
            os.fstat(fd)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002, 0o000])
def test_the_file_mode_follows_the_umask_not_mkstemps_0600(tmp_path, mask):
    old = os.umask(mask)
    try:
        write_atomic(tmp_path / "f", lambda f: f.write(b"x"))
        assert os.umask(mask) == mask  # the umask itself is left as it was
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "f").st_mode) == 0o666 & ~mask


@pytest.mark.parametrize("where", ["missing", "a file"])
def test_a_missing_directory_is_refused_before_anything_is_made(tmp_path, where):
    (tmp_path / "a file").write_bytes(OLD)
    parent = tmp_path / "no" / "such" if where == "missing" else tmp_path / "a file"
    calls = []
    with pytest.raises(FileNotFoundError, match=r"cannot write .*: the directory .* does not exist"):
        write_atomic(parent / "m.npz", calls.append)
    assert calls == []
    assert listing(tmp_path) == ["a file"] and (tmp_path / "a file").read_bytes() == OLD


def test_a_relative_path_is_written_in_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_atomic("rel.bin", lambda f: f.write(NEW))
    assert (tmp_path / "rel.bin").read_bytes() == NEW
    assert listing(tmp_path) == ["rel.bin"]


KILLED_CHILD = textwrap.dedent("""
    import os, signal, sys
    from fastbp._atomic import write_atomic
    path = sys.argv[1]

    def write(f):  # half the new content on disk, then the process dies
        f.write(b"x" * 100000)
        f.flush()
        os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    write_atomic(path, write)
""")


def test_a_process_killed_part_way_leaves_the_previous_file(tmp_path):
    path = tmp_path / "m.npz"
    write_atomic(path, lambda f: f.write(OLD))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-c", KILLED_CHILD, str(path)], env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert path.read_bytes() == OLD
    assert set(listing(tmp_path)) - set(temporaries(tmp_path)) == {"m.npz"}
    write_atomic(path, lambda f: f.write(NEW))  # a leftover temporary is in nobody's way
    assert path.read_bytes() == NEW


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open descriptors in /proc")
def test_a_failing_chmod_closes_the_temporary_and_removes_it(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    target.write_bytes(OLD)

    def refuse(*args):
        raise PermissionError("chmod refused")

    before = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "chmod", refuse)
    for _ in range(5):
        with pytest.raises(PermissionError, match="chmod refused"):
            write_atomic(target, lambda f: f.write(NEW))
    monkeypatch.undo()
    assert len(os.listdir("/proc/self/fd")) == before  # no descriptor left open
    assert listing(tmp_path) == ["out.bin"] and target.read_bytes() == OLD
