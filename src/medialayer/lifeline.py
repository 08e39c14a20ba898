"""Child processes die with their parent, even when the parent is killed with SIGKILL.

`serve` starts processes that nothing else stops: HTTP workers (`serve --workers`), and in each
process that works bulk jobs a forkserver and its fingerprinting pool. A parent killed with
`kill -9` runs no clean-up, and these children would run on, holding their memory, for ever.

Every such child calls `die_with_parent()` as it starts. On Linux the kernel then sends it
SIGKILL the moment its parent exits (PR_SET_PDEATHSIG); everywhere, a thread also watches the
parent's pid and ends the process once it changes (the child was handed to another parent),
which covers other systems and a parent that died before the signal was asked for.

Importing `medialayer.lifeline_forkserver` does the same: the forkserver, whose parent is the
process that owns the pool, preloads it (see `pool_context`).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from multiprocessing.context import ForkServerContext

PR_SET_PDEATHSIG = 1
WATCH_INTERVAL = 1.0
"""Seconds between two looks at the parent's pid, where the kernel does not signal."""
PARENT_ENV = "MEDIALAYER_LIFELINE_PARENT"
"""The pid a child is to live with, set by the parent before it starts children: a child whose
parent died while it was still starting (importing, under load, for seconds) has already been
handed to another parent, so its own `getppid()` would not tell."""


def children_die_with_me() -> None:
    """Children this process starts from now on (that call `die_with_parent`) end with it."""
    os.environ[PARENT_ENV] = str(os.getpid())


def die_with_parent() -> None:
    """End this process when its parent ends: by a kernel signal, or by the pid watch."""
    parent = int(os.environ.get(PARENT_ENV) or os.getppid())
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)
    children_die_with_me()
    threading.Thread(target=_watch, args=(parent,), name="lifeline", daemon=True).start()


def _watch(parent: int) -> None:
    while not threading.Event().wait(WATCH_INTERVAL):
        if os.getppid() != parent:
            os._exit(1)


def pool_context() -> ForkServerContext:
    """The forkserver context for process pools, its server bound to this process's life.

    The pool's own processes are the forkserver's children: give the pool
    `initializer=die_with_parent` too, so that they end with it.
    """
    children_die_with_me()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["medialayer.lifeline_forkserver"])
    return context
