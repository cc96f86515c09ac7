"""Atomic save and checked load of an MLP as an .npz file.

The file holds: format ("fastbp.MLP"), version, sizes, the hidden
activations, the output activation and the flat parameter vector.  Saving
writes a temporary file in the target's directory, flushes it to disk and
renames it over the target, so a crash never leaves a half-written
checkpoint under the target's name.  Loading reads and checks everything
before it builds the network: a missing, truncated or foreign file raises
and no half-made model exists.  Nothing is unpickled.
"""

import os
import zipfile
import zlib

import numpy as np

from fastbp._atomic import write_atomic

__all__ = ["save", "load", "CheckpointError", "FORMAT", "VERSION"]

FORMAT = "fastbp.MLP"
VERSION = 1
_KEYS = ("format", "version", "sizes", "activations", "output_activation", "params")


class CheckpointError(ValueError):
    """A file that is not a readable fastbp MLP checkpoint."""


def save(net, path):
    write_atomic(path, lambda fh: np.savez(
        fh,
        format=np.array(FORMAT),
        version=np.array(VERSION, dtype=np.int64),
        sizes=np.array(net.sizes, dtype=np.int64),
        activations=np.array(net.activations[:-1], dtype="U16"),
        output_activation=np.array(net.output_activation),
        params=net.params))


def _read(path):
    """All arrays of the file, checked for presence; raises CheckpointError."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path!r} is a single .npy array, not a fastbp MLP checkpoint (.npz)")
        with data:
            missing = [k for k in _KEYS if k not in data.files]
            if missing:
                raise CheckpointError(f"{path!r} is not a fastbp MLP checkpoint: missing {missing}")
            return {k: data[k] for k in _KEYS}
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise FileNotFoundError(f"no fastbp checkpoint at {path!r}: the file does not exist") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path!r} is a directory, not a fastbp MLP checkpoint") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError) as exc:
        raise CheckpointError(
            f"{path!r} is not a readable fastbp MLP checkpoint (truncated or foreign file): "
            f"{type(exc).__name__}: {exc}") from None


def load(path, cls):
    """The network saved at ``path``, made as ``cls(sizes, activation=...,
    output_activation=..., seed=0)`` (fastbp.MLP or a subclass) with the
    saved parameters."""
    path = os.fspath(path)
    a = _read(path)
    try:
        fmt = str(a["format"][()])
        version = int(a["version"][()])
    except (TypeError, ValueError):
        raise CheckpointError(f"{path!r}: unreadable format/version fields") from None
    if fmt != FORMAT:
        raise CheckpointError(f"{path!r} holds format {fmt!r}, expected {FORMAT!r}")
    if version != VERSION:
        raise CheckpointError(f"{path!r} has checkpoint version {version}; this fastbp reads version {VERSION}")
    sizes, acts, params = a["sizes"], a["activations"], a["params"]
    if sizes.ndim != 1 or sizes.dtype.kind not in "iu" or sizes.size < 2 or (sizes < 1).any():
        raise CheckpointError(f"{path!r}: sizes must be >= 2 positive ints, got {sizes!r}")
    if acts.dtype.kind != "U" or acts.shape != (sizes.size - 2,):
        raise CheckpointError(f"{path!r}: expected {sizes.size - 2} hidden activation names, got {acts!r}")
    n_params = int(sum(int(sizes[l + 1]) * (int(sizes[l]) + 1) for l in range(sizes.size - 1)))
    if params.dtype != np.float64 or params.shape != (n_params,):
        raise CheckpointError(
            f"{path!r}: params must be {n_params} float64 values for sizes {sizes.tolist()}, "
            f"got {params.dtype} {params.shape}")
    try:
        net = cls([int(s) for s in sizes], activation=[str(x) for x in acts],
                  output_activation=str(a["output_activation"][()]), seed=0)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path!r}: {exc}") from None
    net.params[...] = params
    return net
