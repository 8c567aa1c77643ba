"""A terminal a person can read: during a run, everything the libraries print (TensorFlow's C++
logs, Beam, absl, warnings, Keras) goes to a log file, and only mtrec's own lines reach the screen.

Redirects file descriptors 1 and 2, so output written below Python (C++ logging) is caught too.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Iterator, TextIO, Tuple

PROGRESS = "mtrec: "  # log lines (absl, INFO) that `mtrec run` shows on the terminal as progress


@contextlib.contextmanager
def quiet_terminal(log_path: str, verbose: bool = False) -> Iterator[Tuple[TextIO, TextIO]]:
    """Yields (out, err): text streams to the real stdout and stderr. Everything else written to
    either goes to `log_path` (appended), unless `verbose`."""
    if verbose:
        yield sys.stdout, sys.stderr
        return
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    out = io.TextIOWrapper(os.fdopen(os.dup(saved[0]), "wb", buffering=0), write_through=True)
    err = io.TextIOWrapper(os.fdopen(os.dup(saved[1]), "wb", buffering=0), write_through=True)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        yield out, err
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, log):
            os.close(fd)
        out.close()
        err.close()
