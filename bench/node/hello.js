'use strict';
/*
 * The Node.js app drover and PM2 are compared on (scripts/bench). One file, no dependencies.
 *
 *   GET /            "hello from pid N"
 *   GET /sleep?ms=N  answers after N ms (an in-flight request for shutdown tests)
 *   GET /hang        blocks the event loop for good (a hung process)
 *   GET /grow?mb=N   allocates and touches N MB (default 200) and keeps it (memory-limit tests)
 *
 * Where it listens:
 *   - under drover: on the socket drover hands it as fd 3 (systemd socket activation:
 *     LISTEN_FDS=1, LISTEN_PID = our pid);
 *   - otherwise (under PM2, or alone): on 127.0.0.1:$PORT (PM2 cluster mode shares it).
 *
 * Readiness and shutdown, the same app logic under both supervisors:
 *   - under drover it speaks drover's worker channel (DROVER_CHANNEL_FD: newline-delimited JSON
 *     on a Unix socket, SPEC section 4) in a few lines, without a library: {"type":"ready"}
 *     once it listens, and the shutdown phases: it drains at "drain", answers the other
 *     phases at once and exits after "cleanup";
 *   - under PM2 it is ready when it listens (PM2 watches the cluster 'listening' event), and
 *     SIGINT (PM2's stop signal), SIGTERM or the 'shutdown' message drain it and exit.
 * Draining = stop accepting, answer requests already in flight, mark later responses
 * "Connection: close", and close idle keep-alive connections after a short grace, so a client
 * that is sending a request on an idle connection at that moment is still answered.
 */
const http = require('http');
const net = require('net');

const GRACE_MS = 200;          /* idle keep-alive connections may still bring a request */
const SIGNAL_DRAIN_MS = 10000; /* drain limit when a signal (not drover's phase) asks for it */

const hoard = [];
const conns = new Set();
let draining = false;
let drained = null;           /* called once when the last connection is gone */

const server = http.createServer((req, res) => {
    if (draining) {
        res.setHeader('Connection', 'close');
    }
    const q = req.url.indexOf('?');
    const path = q < 0 ? req.url : req.url.slice(0, q);
    const params = new URLSearchParams(q < 0 ? '' : req.url.slice(q + 1));
    if (path === '/sleep') {
        const ms = parseInt(params.get('ms') || '0', 10);
        setTimeout(() => res.end(`slept ${ms} ms\n`), ms);
    } else if (path === '/hang') {
        for (;;) { /* a blocked event loop, for good: the hang figure */ }
    } else if (path === '/grow') {
        const mb = parseInt(params.get('mb') || '200', 10);
        hoard.push(Buffer.alloc(mb * 1024 * 1024, 1)); /* filled: every page is touched */
        res.end(`grew ${mb} MB\n`);
    } else {
        res.end(`hello from pid ${process.pid}\n`);
    }
});

server.on('connection', (s) => {
    conns.add(s);
    s.on('close', () => {
        conns.delete(s);
        checkDrained();
    });
});

function checkDrained() {
    if (draining && conns.size === 0 && drained) {
        const fn = drained;
        drained = null;
        fn();
    }
}

/* Stops accepting and calls done() when every connection is closed, or after limitMs. */
function drain(limitMs, done) {
    if (draining) {
        return;
    }
    draining = true;
    drained = done;
    /* net.Server's close stops accepting only; http.Server's would also close idle
     * keep-alive connections at once, racing a client that is sending on one. */
    net.Server.prototype.close.call(server);
    setTimeout(() => {
        server.closeIdleConnections();
        setInterval(() => server.closeIdleConnections(), 50).unref();
    }, GRACE_MS).unref();
    setTimeout(() => {
        for (const s of conns) {
            s.destroy();
        }
        conns.clear();
        checkDrained();
    }, limitMs).unref();
    checkDrained();
}

/* ---- drover's channel (only when drover gave us one) ---- */

let channel = null;

function channelSend(msg, cb) {
    if (channel && !channel.destroyed) {
        channel.write(JSON.stringify(msg) + '\n', cb);
    } else if (cb) {
        cb();
    }
}

function onChannelMessage(msg) {
    if (msg.type !== 'phase') {
        return; /* "collect" and the like: this app has no metrics to send */
    }
    const phase = msg.phase;
    if (phase === 'drain') {
        drain(msg.timeout_ms || SIGNAL_DRAIN_MS, () => channelSend({type: 'phase_done', phase}));
    } else if (phase === 'save' || phase === 'close') {
        channelSend({type: 'phase_done', phase});
    } else if (phase === 'cleanup') {
        channelSend({type: 'phase_done', phase}, () => process.exit(0));
    }
    /* "initiated" and "complete" are announcements: nothing to answer */
}

if (process.env.DROVER_CHANNEL_FD) {
    channel = new net.Socket({fd: parseInt(process.env.DROVER_CHANNEL_FD, 10),
                              readable: true, writable: true});
    channel.setEncoding('utf8');
    let buf = '';
    channel.on('data', (chunk) => {
        buf += chunk;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            try {
                onChannelMessage(JSON.parse(line));
            } catch (e) {
                /* not ours to judge: drover never sends garbage */
            }
        }
    });
    channel.on('error', () => {});
    /* The master is gone: finish what is in flight and leave. */
    channel.on('close', () => drain(SIGNAL_DRAIN_MS, () => process.exit(0)));
}

/* ---- signals (PM2, or a plain kill) ---- */

const quit = () => drain(SIGNAL_DRAIN_MS, () => process.exit(0));
process.on('SIGTERM', quit);
process.on('SIGINT', quit);
process.on('message', (m) => {
    if (m === 'shutdown') {
        quit();
    }
});

/* ---- listen ---- */

const ready = () => channelSend({type: 'ready'});
if (process.env.LISTEN_FDS && process.env.LISTEN_PID === String(process.pid)) {
    server.listen({fd: 3}, ready);
} else {
    server.listen(parseInt(process.env.PORT || '8080', 10), process.env.HOST || '127.0.0.1',
                  ready);
}
