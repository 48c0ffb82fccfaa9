"""Release kernel objects (namespaces, veths, XDP programs) when the process is told to stop.

XDP programs and network namespaces outlive the process that made them, so every
owner registers a release action here. On SIGINT or SIGTERM the actions run (last
registered first) and then the handler that was installed before ours runs, so a
program's own handlers and Python's KeyboardInterrupt keep working.

A process killed outright (SIGKILL, SIGBUS) runs nothing, so owners also leave a note
(``note_path``) naming their pid: the next netio process finds the notes of dead
owners and removes what they left.
"""
from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("netio")

STATE_DIR = Path("/run/netio")   # owner notes: gone at reboot, with what they describe

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_actions: dict[int, Callable[[], None]] = {}
_owner_pid = os.getpid()   # a forked child inherits the handler but must not release its parent's things
_tokens = itertools.count()
_previous: dict[int, Any] = {}
_lock = threading.Lock()


def register(action: Callable[[], None]) -> int:
    """Run ``action`` if SIGINT/SIGTERM arrives before ``unregister(token)``; returns the token."""
    global _owner_pid
    with _lock:
        if _owner_pid != os.getpid():
            _actions.clear()  # registered by the parent before a fork: not ours
            _owner_pid = os.getpid()
        token = next(_tokens)
        _actions[token] = action
    _install()
    return token


def unregister(token: int) -> None:
    with _lock:
        _actions.pop(token, None)


def run_all() -> None:
    """Run and forget every registered action, newest first; failures are logged, not raised."""
    with _lock:
        actions = [_actions.pop(t) for t in sorted(_actions, reverse=True)]
    for action in actions:
        try:
            action()
        except Exception:  # one failed release must not keep the others from running
            log.exception("netio: release action failed during shutdown")


def note_path(kind: str, name: str) -> Path:
    """Where the owner of the ``kind`` object ``name`` (an XDP program, a namespace) notes itself."""
    return STATE_DIR / f"{kind}-{name}.json"


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (the owner of a note)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _install() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; the owners' close() still runs
    for signum in _SIGNALS:
        current = signal.getsignal(signum)
        if current is not _handler:
            _previous[signum] = current
            signal.signal(signum, _handler)


def _handler(signum: int, frame: Any) -> None:
    if os.getpid() == _owner_pid:
        run_all()
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        # The default action (terminate): restore it and deliver the signal again.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
