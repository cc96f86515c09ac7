"""Write a file whole or not at all.

The content goes to a temporary file in the target's directory, is flushed
to disk, then renamed over the target: a crash or an error part-way leaves
the previous file (or none) under the target's name, never half of a new
one.  Checkpoints and the benchmark's JSON both save this way.
"""

import os
import tempfile

__all__ = ["write_atomic"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path, write, binary=True):
    """Call ``write(f)`` on a temporary file, then rename it to ``path``."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {path!r}: the directory {directory!r} does not exist")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".fastbp-", suffix=".tmp")
    try:
        # the file object owns fd from here on, so a failing chmod closes it too
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as f:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 is for secrets
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable (best effort: not every OS allows it)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
