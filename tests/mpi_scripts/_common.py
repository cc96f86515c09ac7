"""Shared by the scripts that tests/test_distributed.py runs under
``mpiexec -n 2``: each gathers its findings on rank 0, which prints them as
one JSON line after RESULT; pytest makes the assertions."""

import hashlib
import json
import sys

from mpi4py import MPI

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()


def checksum(a):
    """sha256 of an array's bytes: equal only for bitwise-equal arrays."""
    return hashlib.sha256(a.tobytes()).hexdigest()


def error_text(call):
    """'TypeName: message' of the exception call() raises, or None."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test inspects what came
        return f"{type(exc).__name__}: {exc}"
    return None


def report(result):
    """Gather every rank's result dict; rank 0 prints {rank: result}."""
    everything = COMM.gather(result, root=0)
    if RANK == 0:
        sys.stdout.write("RESULT " + json.dumps(everything) + "\n")
        sys.stdout.flush()
