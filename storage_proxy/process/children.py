"""Child processes that end with their parent, however the parent ends (SIGKILL included).

Linux delivers a chosen signal to a process when its parent dies (PR_SET_PDEATHSIG, kept
across exec). A child started through `start_child` has it set before it execs; a spawned
Python child calls `die_with_parent` first thing. Either way a child checks that its parent
is still the one that started it, since the parent may have died before the signal was set.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from typing import Any

PR_SET_PDEATHSIG = 1

# Runs a program through a tiny Python that asks Linux for the signal when its parent dies and
# then becomes the program. A preexec_fn would do the same in the forked child, but that runs
# the parent's fork handlers there, and gRPC's break the child when other threads of the parent
# are inside gRPC (tests restart Redis under live channels).
_EXEC_DYING_WITH_PARENT = (
    "import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGTERM); "
    "os.getppid() == int(sys.argv[1]) or os._exit(1); os.execv(sys.argv[2], sys.argv[2:])"
)


def die_with_parent(sig: int, parent: int) -> None:
    """Have Linux send `sig` to this process when its parent dies; exit at once if the parent
    (pid `parent`) is already gone. Elsewhere, nothing."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig))
    if os.getppid() != parent:
        os._exit(1)


def start_child(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Popen a process that gets SIGTERM if this one dies (Linux): through `setpriv
    --pdeathsig`, else through a Python that sets the signal and execs it; never a preexec_fn,
    which makes Python run its at-fork handlers in the child, and gRPC's can abort it before
    exec once this process has used gRPC. The signal follows the death of the thread that
    calls this, so call it from a thread that lives as long as the child should."""
    if not sys.platform.startswith("linux"):
        return subprocess.Popen(args, **kwargs)
    setpriv = shutil.which("setpriv")
    if setpriv:
        return subprocess.Popen([setpriv, "--pdeathsig", "TERM", "--", *args], **kwargs)
    return subprocess.Popen([sys.executable, "-c", _EXEC_DYING_WITH_PARENT, str(os.getpid()),
                             *args], **kwargs)
