"""Holds an instance lock in a process of its own, for tests/test_lock.py.

``python lock_holder.py URL STORE PURPOSE`` takes the lock, prints ``locked <pid>``, and holds it
until a line (or end of file) arrives on stdin. A refusal goes to stderr with exit status 3.
"""

from __future__ import annotations

import os
import sys

from surveysync.ledger import InstanceLock, LockHeld


def main(url: str, store: str, purpose: str) -> int:
    try:
        with InstanceLock(url, store, purpose):
            print(f"locked {os.getpid()}", flush=True)
            sys.stdin.readline()
    except LockHeld as exc:
        print(exc, file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
