"""A worker that never uses its channel: reports which signal asked it to stop, then exits 0.

Every candidate stop signal is caught, so a worker sent the wrong one says so too."""

import os
import signal
import sys
import time

CAUGHT = [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
          signal.SIGUSR2, signal.SIGWINCH]


def on_signal(sig, _frame):
    print(f"got {signal.Signals(sig).name}", flush=True)
    sys.exit(0)


for s in CAUGHT:
    signal.signal(s, on_signal)
print(f"waiting pid {os.getpid()}", flush=True)
while True:
    time.sleep(1)
