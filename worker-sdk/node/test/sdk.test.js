'use strict';
// Unit tests of drover-worker: run with `node --test worker-sdk/node/test/`. The channel is a
// real socketpair (a child's 'pipe' stdio on fd 3, as drover passes DROVER_CHANNEL_FD), and
// the metrics come from the real prom-client, installed by scripts/setup into tests/node.
const test = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

const SDK = path.resolve(__dirname, '..', 'index.js');
const DEPS = path.resolve(__dirname, '..', '..', '..', 'tests', 'node', 'node_modules');
const promClient = require(path.join(DEPS, 'prom-client'));
const drover = require(SDK);

const DEADLINE_MS = 10000;

/* A child node running script with the SDK's channel on fd 3; we play the master. */
function child(script, env = {}) {
  const proc = spawn(process.execPath, ['-e', `const drover = require(${JSON.stringify(SDK)});\n${script}`], {
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    env: Object.assign({}, process.env, { DROVER_CHANNEL_FD: '3', DROVER_APP: 'test' }, env),
  });
  const ch = proc.stdio[3];
  const msgs = [];
  let buf = '';
  let stderr = '';
  let stdout = '';
  ch.on('data', (d) => {
    buf += d.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      msgs.push(JSON.parse(buf.slice(0, nl)));
      buf = buf.slice(nl + 1);
    }
  });
  ch.on('error', () => {});
  proc.stderr.on('data', (d) => { stderr += d; });
  proc.stdout.on('data', (d) => { stdout += d; });
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve({ code, sig })));
  return {
    proc, ch, msgs, exited,
    get stderr() { return stderr; },
    get stdout() { return stdout; },
    send(obj) { ch.write(typeof obj === 'string' ? obj : JSON.stringify(obj) + '\n'); },
    async wait(pred, what) {
      const end = Date.now() + DEADLINE_MS;
      for (;;) {
        const m = msgs.find(pred);
        if (m) return m;
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(msgs)}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async waitFor(cond, what) {
      const end = Date.now() + DEADLINE_MS;
      while (!cond()) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    kill() { try { proc.kill('SIGKILL'); } catch (_) { /* gone */ } },
  };
}

test('ready, status, recycle and phases in order, each answered once its promise settles', async () => {
  const c = child(`
    const order = [];
    drover.onPhase('drain', async () => { await new Promise(r => setTimeout(r, 200)); order.push('drain'); });
    drover.onPhase('save', () => { order.push('save'); });
    drover.onPhase('cleanup', () => { console.log(JSON.stringify(order)); });
    drover.ready(); drover.status('warming\\nup'); drover.recycle('leak');
    setInterval(() => {}, 1000);
  `);
  try {
    await c.wait((m) => m.type === 'ready', 'ready');
    const st = await c.wait((m) => m.type === 'status', 'status');
    assert.strictEqual(st.text, 'warming up');
    assert.deepStrictEqual(await c.wait((m) => m.type === 'recycle', 'recycle'), { type: 'recycle', reason: 'leak' });
    const t0 = Date.now();
    c.send({ type: 'phase', phase: 'drain', timeout_ms: 5000 });
    await c.wait((m) => m.type === 'phase_done' && m.phase === 'drain', 'drain done');
    assert.ok(Date.now() - t0 >= 190, 'phase_done came before the handler settled');
    for (const phase of ['save', 'close', 'cleanup']) {
      c.send({ type: 'phase', phase, timeout_ms: 5000 });
      await c.wait((m) => m.type === 'phase_done' && m.phase === phase, `${phase} done`);
    }
    const { code } = await c.exited; // the default after cleanup: exit
    assert.strictEqual(code, 0);
    assert.deepStrictEqual(JSON.parse(c.stdout.trim()), ['drain', 'save']);
  } finally {
    c.kill();
  }
});

test('heartbeats from the event loop when WATCHDOG_USEC is set, and none while it is blocked', async () => {
  const c = child(`
    setInterval(() => {}, 1000);
    process.stdin; setTimeout(() => { const end = Date.now() + 600; while (Date.now() < end); console.log('unblocked'); }, 300);
  `, { WATCHDOG_USEC: '100000', WATCHDOG_PID: '' });
  try {
    await c.waitFor(() => c.msgs.filter((m) => m.type === 'heartbeat').length >= 3, '3 heartbeats');
    await c.waitFor(() => c.stdout.includes('unblocked'), 'the blocked loop');
    // While blocked (600 ms at 50 ms intervals) the SDK sent nothing: the gap shows in timing,
    // which we check by counting: at most ~300/50 + a few before, some after.
    const before = c.msgs.filter((m) => m.type === 'heartbeat').length;
    assert.ok(before <= 12, `${before} heartbeats in ~0.9 s at 50 ms: the loop was not blocked?`);
    await c.waitFor(() => c.msgs.filter((m) => m.type === 'heartbeat').length >= before + 3, 'heartbeats resume');
  } finally {
    c.kill();
  }
});

test('no heartbeats without WATCHDOG_USEC', async () => {
  const c = child('drover.ready(); setInterval(() => {}, 1000);', { WATCHDOG_USEC: '' });
  try {
    await c.wait((m) => m.type === 'ready', 'ready');
    await new Promise((r) => setTimeout(r, 300));
    assert.strictEqual(c.msgs.filter((m) => m.type === 'heartbeat').length, 0);
  } finally {
    c.kill();
  }
});

test('garbage on the channel is skipped, and a master that closes the channel is survived', async () => {
  const c = child(`
    drover.on('disconnect', (why) => console.log('disconnect ' + why));
    drover.onPhase('save', () => console.log('save ran'));
    const srv = require('http').createServer((q, s) => s.end('alive'));
    drover.listen(srv, { port: 0 }).then(() => { console.log('port ' + srv.address().port); drover.ready(); });
  `);
  try {
    await c.wait((m) => m.type === 'ready', 'ready');
    c.send('not json at all\n');
    c.send('{"type":"phase","phase":"nonsense"}\n[1,2]\nnull\n{"type":"from the future"}\n');
    c.send({ type: 'phase', phase: 'save', timeout_ms: 1000 });
    await c.wait((m) => m.type === 'phase_done' && m.phase === 'save', 'save done after garbage');
    c.ch.end();
    await c.waitFor(() => c.stdout.includes('disconnect'), 'the disconnect event');
    const port = Number(/port (\d+)/.exec(c.stdout)[1]);
    const body = await new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: '/' }, (res) => {
        let b = '';
        res.on('data', (d) => { b += d; });
        res.on('end', () => resolve(b));
      }).on('error', reject);
    });
    assert.strictEqual(body, 'alive');
    assert.strictEqual(c.proc.exitCode, null);
    assert.match(c.stderr, /not JSON/);
  } finally {
    c.kill();
  }
});

test('a line over 1 MiB from the master closes the channel, not the worker', async () => {
  const c = child("drover.on('disconnect', (w) => console.log('gone ' + w)); drover.ready(); setInterval(() => {}, 1000);");
  try {
    await c.wait((m) => m.type === 'ready', 'ready');
    c.send('x'.repeat(1024 * 1024 + 10));
    await c.waitFor(() => c.stdout.includes('gone protocol'), 'the protocol error');
    assert.strictEqual(c.proc.exitCode, null);
  } finally {
    c.kill();
  }
});

test('prom-client metrics as drover snapshots on collect: counters, gauges with their aggregator, histograms, summaries', async () => {
  const c = child(`
    const p = require(${JSON.stringify(path.join(DEPS, 'prom-client'))});
    const reg = new p.Registry();
    const ctr = new p.Counter({ name: 'app_requests_total', help: 'requests', labelNames: ['code'], registers: [reg] });
    ctr.inc({ code: '200' }, 3); ctr.inc({ code: '500' });
    new p.Gauge({ name: 'app_inflight', help: 'g', registers: [reg] }).set(2);
    new p.Gauge({ name: 'app_peak', help: 'g', aggregator: 'max', registers: [reg] }).set(7);
    new p.Gauge({ name: 'app_avg', help: 'g', aggregator: 'average', registers: [reg] }).set(1);
    new p.Gauge({ name: 'app_omitted', help: 'g', aggregator: 'omit', registers: [reg] }).set(1);
    const h = new p.Histogram({ name: 'app_seconds', help: 'h', buckets: [0.1, 1], labelNames: ['route'], registers: [reg] });
    h.observe({ route: '/' }, 0.05); h.observe({ route: '/' }, 0.5); h.observe({ route: '/' }, 5);
    const s = new p.Summary({ name: 'app_size', help: 's', registers: [reg] }); s.observe(10); s.observe(20);
    new p.Counter({ name: 'drover_mine', help: 'refused', registers: [reg] }).inc();
    drover.worker().metricsIntervalMs = 100000;
    drover.useRegistry(reg);
    drover.ready(); setInterval(() => {}, 1000);
  `);
  try {
    await c.wait((m) => m.type === 'ready', 'ready');
    c.msgs.length = 0;
    c.send({ type: 'collect' });
    const snap = await c.wait((m) => m.type === 'metrics', 'a snapshot');
    const by = Object.fromEntries(snap.families.map((f) => [f.name, f]));
    assert.deepStrictEqual(by.app_requests_total.samples.sort((a, b) => a.value - b.value),
      [{ labels: { code: '500' }, value: 1 }, { labels: { code: '200' }, value: 3 }]);
    assert.strictEqual(by.app_requests_total.type, 'counter');
    assert.strictEqual(by.app_inflight.agg, 'sum');
    assert.strictEqual(by.app_peak.agg, 'max');
    assert.strictEqual(by.app_avg.agg, 'avg');
    assert.strictEqual(by.app_omitted, undefined);
    assert.deepStrictEqual(by.app_seconds.buckets, [0.1, 1]);
    assert.deepStrictEqual(by.app_seconds.samples, [{ labels: { route: '/' }, counts: [1, 2, 3], sum: 5.55, count: 3 }]);
    assert.deepStrictEqual(by.app_size_sum.samples, [{ labels: {}, value: 30 }]);
    assert.deepStrictEqual(by.app_size_count.samples, [{ labels: {}, value: 2 }]);
    assert.strictEqual(by.drover_mine, undefined);
    // Refused once, not per snapshot.
    c.send({ type: 'collect' });
    c.send({ type: 'collect' });
    await c.waitFor(() => c.msgs.filter((m) => m.type === 'metrics').length >= 2, 'more snapshots');
    assert.strictEqual(c.stderr.match(/drover_mine not sent/g).length, 1, c.stderr);
  } finally {
    c.kill();
  }
});

test('a registry that throws is reported once and the other registries are still sent', async () => {
  const c = child(`
    let n = 0;
    drover.useRegistry({ getMetricsAsJSON() { throw new Error('boom'); } });
    drover.useRegistry({ async getMetricsAsJSON() { return [{ name: 'ok_total', help: '', type: 'counter', values: [{ labels: {}, value: ++n }] }]; } });
    drover.useRegistry({ async getMetricsAsJSON() { throw new Error('async boom'); } });
    drover.ready(); setInterval(() => {}, 1000);
  `);
  try {
    await c.wait((m) => m.type === 'ready', 'ready');
    for (let i = 0; i < 3; i++) c.send({ type: 'collect' });
    await c.waitFor(() => c.msgs.filter((m) => m.type === 'metrics').length >= 3, '3 snapshots');
    const snap = c.msgs.filter((m) => m.type === 'metrics').pop();
    assert.deepStrictEqual(snap.families.map((f) => f.name), ['ok_total']);
    assert.strictEqual(c.stderr.match(/threw/g).length, 2, c.stderr);
  } finally {
    c.kill();
  }
});

test('fromPromClient refuses what drover would refuse, family by family', () => {
  const out = drover.fromPromClient([
    { name: 'bad name', type: 'counter', help: '', values: [] },
    { name: 'neg_total', type: 'counter', help: '', values: [{ labels: {}, value: -1 }] },
    { name: 'lbl_total', type: 'counter', help: '', values: [{ labels: { worker: '1' }, value: 1 }] },
    { name: 'weird', type: 'untyped', help: '', values: [] },
    { name: 'nan_gauge', type: 'gauge', help: '', values: [{ labels: {}, value: NaN }, { labels: { a: 1 }, value: 2 }] },
    { name: 'fine_total', type: 'counter', help: 'h', values: [{ labels: { a: 1 }, value: 2 }] },
    { name: 'unobserved', type: 'histogram', help: '', values: [] }, // buckets unknown: not sent
  ]);
  assert.deepStrictEqual(out.families.map((f) => f.name), ['nan_gauge', 'fine_total']);
  assert.deepStrictEqual(out.families[0].samples, [{ labels: { a: '1' }, value: 2 }]);
  assert.deepStrictEqual(out.refused.map((r) => r.name), ['bad name', 'neg_total', 'lbl_total', 'weird']);
});

test('the real prom-client default metrics convert without a refusal', async () => {
  const reg = new promClient.Registry();
  promClient.collectDefaultMetrics({ register: reg });
  new promClient.Histogram({ name: 'x_seconds', help: 'x', registers: [reg] }).observe(0.3);
  const out = drover.fromPromClient(await reg.getMetricsAsJSON());
  assert.deepStrictEqual(out.refused, []);
  assert.ok(out.families.some((f) => f.name === 'process_cpu_user_seconds_total'));
  assert.ok(out.families.some((f) => f.type === 'histogram'));
});

test('saveState is atomic and loadState reads it back; nothing without a state file', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-node-'));
  try {
    const file = path.join(dir, 'state');
    const w = new drover.Worker({ env: { DROVER_STATE_FILE: file } });
    assert.strictEqual(w.loadState(), null);
    assert.strictEqual(w.saveState({ hits: 41 }), true);
    assert.deepStrictEqual(w.loadState(), { hits: 41 });
    w.saveState({ hits: 42 });
    assert.deepStrictEqual(new drover.Worker({ env: { DROVER_STATE_FILE: file } }).loadState(), { hits: 42 });
    assert.deepStrictEqual(fs.readdirSync(dir), ['state']); // no temp file left
    // A temporary of a worker killed while saving is swept; a live process's is not.
    fs.writeFileSync(`${file}.tmp.999999999`, 'stale');
    fs.writeFileSync(`${file}.tmp.${process.ppid}`, 'busy');
    w.saveState({ hits: 43 });
    assert.deepStrictEqual(fs.readdirSync(dir).sort(), ['state', `state.tmp.${process.ppid}`]);
    fs.rmSync(`${file}.tmp.${process.ppid}`);
    fs.writeFileSync(file, '{broken');
    assert.strictEqual(w.loadState(), null);
    const outside = new drover.Worker({ env: {} });
    assert.strictEqual(outside.supervised, false);
    assert.strictEqual(outside.saveState({ a: 1 }), false);
    assert.strictEqual(outside.ready(), false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('LISTEN_FDS is honoured only for this process and removed from the environment', () => {
  const env = { LISTEN_FDS: '2', LISTEN_PID: String(process.pid), LISTEN_FDNAMES: 'web:admin' };
  const w = new drover.Worker({ env });
  assert.deepStrictEqual(w.listenFds, [3, 4]);
  assert.deepStrictEqual(w.listenNames, ['web', 'admin']);
  assert.deepStrictEqual(env, {});
  const other = { LISTEN_FDS: '1', LISTEN_PID: '1' };
  assert.deepStrictEqual(new drover.Worker({ env: other }).listenFds, []);
  assert.strictEqual(other.LISTEN_FDS, '1');
});

function request(port, agent, pathName) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: pathName, agent }, (res) => {
      let b = '';
      res.on('data', (d) => { b += d; });
      res.on('end', () => resolve({ status: res.statusCode, connection: res.headers.connection, body: b }));
    }).on('error', reject);
  });
}

test('the default drain: in-flight requests finish, keep-alive requests during the grace get Connection: close', async () => {
  const w = new drover.Worker({ env: {}, idleGraceMs: 300 });
  const server = http.createServer((req, res) => {
    const ms = Number(new URL(req.url, 'http://x').searchParams.get('ms') || 0);
    setTimeout(() => res.end('done'), ms);
  });
  await w.listen(server, { port: 0, host: '127.0.0.1' });
  const port = server.address().port;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  try {
    const first = await Promise.all([request(port, agent, '/?ms=20'), request(port, agent, '/?ms=20')]);
    assert.strictEqual(first[0].connection, 'keep-alive');
    const slow = request(port, agent, '/?ms=500');
    await new Promise((r) => setTimeout(r, 50));
    const drained = w.drain(5000);
    const during = await request(port, agent, '/'); // on the idle keep-alive connection
    assert.strictEqual(during.status, 200);
    assert.strictEqual(during.connection, 'close');
    assert.strictEqual((await slow).body, 'done');
    const t0 = Date.now();
    await drained;
    assert.ok(Date.now() - t0 < 2000);
    await assert.rejects(request(port, new http.Agent(), '/'), /ECONNREFUSED/);
  } finally {
    agent.destroy();
    server.close();
  }
});

test('the ESM entry point is the same module', async () => {
  const esm = await import(path.join(__dirname, '..', 'index.mjs'));
  assert.strictEqual(esm.default, drover);
  assert.strictEqual(esm.listen, drover.listen);
  assert.strictEqual(esm.useRegistry, drover.useRegistry);
  assert.strictEqual(esm.Worker, drover.Worker);
  const pkg = require('../package.json');
  assert.deepStrictEqual(pkg.dependencies, undefined); // no runtime dependencies
  assert.strictEqual(pkg.exports['.'].import, './index.mjs');
});
