/*
 * orphans: descendants of workers that outlive them (SPEC section 9, "containers"). drover is a
 * child subreaper, so a worker's child that left the worker's process group is reparented to
 * drover when the worker dies, and libev reaps it when it exits. None may outlive drover: at
 * the end, whatever is still drover's child gets SIGKILL (and is reaped by whoever inherits it
 * next, drover exiting right after).
 */
#pragma once

/* SIGKILL to every remaining child of this process, one log record each. From
 * /proc/self/task/TID/children, or a scan of /proc on kernels without it. */
void orphans_kill(void);
