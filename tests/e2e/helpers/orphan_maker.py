#!/usr/bin/python3
"""Leaves an orphan behind: forks a grandchild that detaches (setsid) from the worker's process
group, records its pid in the file named by argv[1], outlives the worker by a moment, and
exits. Whoever is the subreaper (drover) must reap it. The worker itself exits 0 at once."""
import os
import sys
import time

pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        with open(sys.argv[1], "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        os._exit(0)
    os._exit(0)
os.waitpid(pid, 0)
sys.exit(0)
