'use strict';
/*
 * The Node.js app drover and PM2 are compared on (scripts/bench). One file; it uses drover's
 * Node SDK (worker-sdk/node, no dependencies) and, with BENCH_SERIES, prom-client.
 *
 *   GET /            "hello from pid N"
 *   GET /sleep?ms=N  answers after N ms (an in-flight request for shutdown tests)
 *   GET /hang        blocks the event loop for good (a hung process)
 *   GET /grow?mb=N   allocates and touches N MB (default 200) and keeps it (memory-limit tests)
 *
 * How it drains, chosen by BENCH_DRAIN (the three drains of scripts/bench/drains):
 *   sdk (the default)  the SDK: `drover.listen(server)` on the socket drover hands it (fd 3) or,
 *                      outside drover, on 127.0.0.1:$PORT (PM2 cluster mode shares it);
 *                      `drover.ready()` once it listens; under drover the six phases arrive on
 *                      the channel and the SDK's default drain runs at "drain" (stop accepting,
 *                      answer what arrives with "Connection: close", close idle keep-alive
 *                      connections after a grace). Under PM2, SIGINT (PM2's kill_signal) or
 *                      SIGTERM runs the same drain, then the process exits.
 *   exit               an app written without a drain: it exits at SIGINT or SIGTERM.
 *   close              the drain most Node apps write: `server.close()` plus
 *                      `server.closeIdleConnections()` at the signal, exit once closed.
 * exit and close do not load the SDK: they are apps without it, which get drover's
 * `stop_signal` (no channel message ever comes from them) and listen on fd 3 themselves.
 *
 * Under PM2 every mode sends process.send('ready') once it listens, for `wait_ready: true`.
 *
 * BENCH_SERIES=N (sdk mode): a prom-client counter with N label sets, one incremented per
 * request; BENCH_REGISTRY=1 hands prom-client's registry to the SDK (`useRegistry`), so the
 * series reach drover's /metrics. scripts/bench/cluster measures what that costs.
 */
const http = require('http');

const MODE = process.env.BENCH_DRAIN || 'sdk';
const SIGNAL_DRAIN_MS = 10000; /* drain limit when a signal (not drover's phase) asks for it */
const SERIES = parseInt(process.env.BENCH_SERIES || '0', 10);

const hoard = [];
let count = null;
if (SERIES > 0) {
    const client = require('prom-client');
    count = new client.Counter({name: 'bench_requests_total', help: 'requests, by bucket',
                                labelNames: ['bucket']});
    for (let i = 0; i < SERIES; i++) {
        count.inc({bucket: String(i)}, 0);
    }
}
let served = 0;

function handler(req, res) {
    const q = req.url.indexOf('?');
    const path = q < 0 ? req.url : req.url.slice(0, q);
    const params = new URLSearchParams(q < 0 ? '' : req.url.slice(q + 1));
    if (count) {
        count.inc({bucket: String(served++ % SERIES)});
    }
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
}

const server = http.createServer(handler);
const pm2Ready = () => {
    if (process.send) {
        process.send('ready'); /* PM2's wait_ready */
    }
};

if (MODE === 'sdk') {
    const drover = require('../../worker-sdk/node');
    if (count && process.env.BENCH_REGISTRY === '1') {
        drover.useRegistry(require('prom-client').register);
    }
    drover.listen(server, {port: parseInt(process.env.PORT || '8080', 10),
                           host: process.env.HOST || '127.0.0.1'}).then(() => {
        drover.ready();
        pm2Ready();
    });
    if (!drover.supervised) {
        /* PM2, or a plain kill: the SDK's drain, then leave. */
        const quit = () => drover.drain(SIGNAL_DRAIN_MS).then(() => process.exit(0));
        process.on('SIGTERM', quit);
        process.on('SIGINT', quit);
        process.on('message', (m) => m === 'shutdown' && quit());
    }
} else {
    if (MODE === 'exit') {
        const quit = () => process.exit(0);
        process.on('SIGTERM', quit);
        process.on('SIGINT', quit);
    } else if (MODE === 'close') {
        const quit = () => {
            server.close(() => process.exit(0));
            server.closeIdleConnections();
            setTimeout(() => process.exit(0), SIGNAL_DRAIN_MS).unref();
        };
        process.on('SIGTERM', quit);
        process.on('SIGINT', quit);
    } else {
        throw new Error(`BENCH_DRAIN=${MODE}: not sdk, exit or close`);
    }
    if (process.env.LISTEN_FDS && process.env.LISTEN_PID === String(process.pid)) {
        server.listen({fd: 3}, pm2Ready);
    } else {
        server.listen(parseInt(process.env.PORT || '8080', 10), process.env.HOST || '127.0.0.1',
                      pm2Ready);
    }
}
