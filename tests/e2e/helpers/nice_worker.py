"""A worker that says ready on its channel only once a file exists: ARGV[1] with its generation
appended ("go-2" for generation 2), so a test can look at it while it is still starting. It starts
a thread first (a runtime's threads inherit the nice value they were born with) and leaves at
the drain phase."""

import os
import select
import sys
import threading

go = f"{sys.argv[1]}-{os.environ.get('DROVER_GENERATION', '0')}"
chan = int(os.environ["DROVER_CHANNEL_FD"])
threading.Thread(target=lambda: threading.Event().wait(), daemon=True).start()
print(f"starting pid {os.getpid()} thread {threading.get_native_id()}", flush=True)
ready = False
buf = b""
while True:
    if not ready and os.path.exists(go):
        os.write(chan, b'{"type":"ready"}\n')
        ready = True
    r, _, _ = select.select([chan], [], [], 0.02)
    if r:
        data = os.read(chan, 65536)
        if not data:
            sys.exit(0)
        buf += data
        if b'"drain"' in buf:
            sys.exit(0)
