"""``surveysync`` as the crash harness's scripted trials start it: the real CLI, with its wall
clock starting at ``CRASH_SYNC_CLOCK`` (Unix seconds) and ticking from there.

Why: a repeat is byte-identical only if it is rendered as of the first call; two syncs that
happen to start in the same second would render alike even where the code re-renders, and a
test of that would pass or fail by speed. The harness gives each sync a clock at least ten
seconds past the one before, so every sync's "now" differs. Monotonic time (timeouts, retry
budgets) is the real one. Without the variable this is plain ``surveysync``.

    python -m tests.crash_sync --config FILE sync
"""

from __future__ import annotations

import os


def main() -> None:
    from surveysync.cli import main as cli

    start = os.environ.get("CRASH_SYNC_CLOCK")
    if not start:
        cli()
        return
    import time_machine

    with time_machine.travel(float(start), tick=True):
        cli()


if __name__ == "__main__":
    main()
