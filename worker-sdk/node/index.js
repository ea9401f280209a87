'use strict';
/*
 * drover-worker: the Node.js worker SDK of the drover process supervisor (SPEC sections 4, 5, 14).
 *
 * A program run by drover learns everything from its environment: the listening sockets
 * (LISTEN_FDS from fd 3, as systemd passes them), its identity, its saved-state file and a
 * channel back to the master (DROVER_CHANNEL_FD: newline-delimited JSON both ways). This module
 * reads that environment on first use and speaks the channel. Outside drover the same program
 * binds its own port and every call is a harmless no-op. No runtime dependencies.
 */
const { EventEmitter } = require('events');
const fs = require('fs');
const http = require('http');
const net = require('net');
const path = require('path');

const PHASES = ['initiated', 'drain', 'save', 'close', 'cleanup', 'complete'];
const LINE_MAX = 1024 * 1024; // the longest line the channel carries (SPEC section 4)
const OUT_MAX = 4 * LINE_MAX; // queued output past which metrics snapshots are skipped
const STATUS_MAX = 4096;
const MAX_FAMILIES = 1000; // the master's per-worker limits (supervisor/snapshot.h)
const MAX_SERIES = 10000;
const MAX_BUCKETS = 100;
const MAX_LABELS = 32;
const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

// prom-client's cluster aggregators as drover's gauge aggregations; null: the family is not sent.
// 'first' means "the same in every worker": any one is right, and max is one of them.
const AGGREGATORS = { sum: 'sum', max: 'max', min: 'min', average: 'avg', first: 'max', omit: null };

function warn(text) {
  try {
    process.stderr.write(`drover-worker: ${text}\n`);
  } catch (_) {
    /* stderr gone: nothing else to tell */
  }
}

function intEnv(value, fallback) {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  return Number.isInteger(n) ? n : fallback;
}

/* ---- prom-client's registry as drover families -------------------------------------------- */

function checkLabels(labels, reserved) {
  const out = {};
  const names = Object.keys(labels || {});
  if (names.length > MAX_LABELS) throw new Error(`more than ${MAX_LABELS} labels on a sample`);
  for (const name of names) {
    if (!LABEL_RE.test(name) || name.startsWith('__')) throw new Error(`invalid label name '${name}'`);
    if (reserved.includes(name)) throw new Error(`label '${name}' is drover's own`);
    const v = labels[name];
    if (v === undefined || v === null) continue;
    out[name] = String(v);
  }
  return out;
}

function finite(v) {
  return typeof v === 'number' && Number.isFinite(v);
}

function convertSimple(m, type) {
  const samples = [];
  for (const v of m.values || []) {
    if (!finite(v.value)) continue; // NaN and infinities have no JSON form; a gauge may be unset
    if (type === 'counter' && v.value < 0) throw new Error('a counter is negative');
    samples.push({ labels: checkLabels(v.labels, ['app', 'worker']), value: v.value });
  }
  return samples;
}

function convertHistogram(m) {
  const series = new Map();
  const key = (labels) => {
    const rest = Object.assign({}, labels);
    delete rest.le;
    return JSON.stringify(Object.keys(rest).sort().map((k) => [k, String(rest[k])]));
  };
  const bucket = `${m.name}_bucket`;
  for (const v of m.values || []) {
    const k = key(v.labels);
    if (!series.has(k)) {
      const rest = Object.assign({}, v.labels);
      delete rest.le;
      series.set(k, { labels: checkLabels(rest, ['app', 'worker', 'le']), le: [], sum: 0, count: null });
    }
    const s = series.get(k);
    const metric = v.metricName || '';
    if (metric === bucket || (metric === '' && v.labels && v.labels.le !== undefined)) {
      const le = v.labels.le === '+Inf' ? Infinity : Number(v.labels.le);
      s.le.push([le, v.value]);
    } else if (metric.endsWith('_sum')) {
      s.sum = v.value;
    } else if (metric.endsWith('_count')) {
      s.count = v.value;
    }
  }
  let buckets = null;
  const samples = [];
  for (const s of series.values()) {
    s.le.sort((a, b) => a[0] - b[0]);
    const bounds = s.le.filter((e) => e[0] !== Infinity).map((e) => e[0]);
    const inf = s.le.find((e) => e[0] === Infinity);
    if (bounds.some((b) => !finite(b))) throw new Error('a bucket bound is not a number');
    if (bounds.length > MAX_BUCKETS) throw new Error(`more than ${MAX_BUCKETS} buckets`);
    if (buckets === null) buckets = bounds;
    else if (buckets.length !== bounds.length || buckets.some((b, i) => b !== bounds[i])) {
      throw new Error('series with different buckets');
    }
    const counts = s.le.filter((e) => e[0] !== Infinity).map((e) => e[1]);
    counts.push(inf ? inf[1] : s.count !== null ? s.count : counts.length ? counts[counts.length - 1] : 0);
    for (let i = 0; i < counts.length; i++) {
      if (!finite(counts[i]) || counts[i] < 0 || (i > 0 && counts[i] < counts[i - 1])) {
        throw new Error('bucket counts are negative or not cumulative');
      }
    }
    if (!finite(s.sum)) throw new Error("a histogram's sum is not a number");
    samples.push({ labels: s.labels, counts, sum: s.sum, count: counts[counts.length - 1] });
  }
  return { buckets: buckets || [], samples };
}

/*
 * prom-client's register.getMetricsAsJSON() as drover families (SPEC section 4). Returns
 * { families, refused: [{ name, why }] }: a family drover would refuse is left out (the master
 * refuses a whole snapshot over one bad family), with the reason.
 */
function fromPromClient(metrics, options = {}) {
  const families = [];
  const refused = [];
  let series = 0;
  const maxSeries = options.maxSeries || MAX_SERIES;
  for (const m of Array.isArray(metrics) ? metrics : []) {
    const name = m && typeof m.name === 'string' ? m.name : String(m && m.name);
    try {
      if (!NAME_RE.test(name)) throw new Error('not a valid metric name');
      if (name.startsWith('drover_')) throw new Error("names starting with drover_ are drover's own");
      const help = typeof m.help === 'string' ? m.help : '';
      let out;
      if (m.type === 'counter') {
        out = [{ name, type: 'counter', help, samples: convertSimple(m, 'counter') }];
      } else if (m.type === 'gauge') {
        const agg = Object.prototype.hasOwnProperty.call(AGGREGATORS, m.aggregator || 'sum')
          ? AGGREGATORS[m.aggregator || 'sum'] : undefined;
        if (agg === undefined) throw new Error(`aggregator '${m.aggregator}' has no drover equivalent`);
        if (agg === null) continue; // 'omit': the app asked for it not to be merged
        out = [{ name, type: 'gauge', help, agg, samples: convertSimple(m, 'gauge') }];
      } else if (m.type === 'histogram') {
        const h = convertHistogram(m);
        // Without a series yet, its buckets are unknown: an empty layout would conflict with
        // the real one in the master's definition of the family.
        if (h.samples.length === 0) continue;
        out = [{ name, type: 'histogram', help, buckets: h.buckets, samples: h.samples }];
      } else if (m.type === 'summary') {
        // Quantiles cannot be merged over workers; _sum and _count can: two counters.
        const sums = [];
        const counts = [];
        for (const v of m.values || []) {
          if (v.metricName === `${name}_sum` || v.metricName === `${name}_count`) {
            const s = { labels: checkLabels(v.labels, ['app', 'worker', 'quantile']), value: v.value };
            if (!finite(s.value) || s.value < 0) continue;
            (v.metricName.endsWith('_sum') ? sums : counts).push(s);
          }
        }
        out = [{ name: `${name}_sum`, type: 'counter', help, samples: sums },
          { name: `${name}_count`, type: 'counter', help, samples: counts }];
      } else {
        throw new Error(`type '${m.type}' is not counter, gauge, histogram or summary`);
      }
      const n = out.reduce((a, f) => a + f.samples.length, 0);
      if (series + n > maxSeries) throw new Error(`over the ${maxSeries} series a worker may send`);
      if (families.length + out.length > MAX_FAMILIES) throw new Error(`over ${MAX_FAMILIES} families`);
      series += n;
      families.push(...out);
    } catch (e) {
      refused.push({ name, why: e.message });
    }
  }
  return { families, refused };
}

/* ---- the worker -------------------------------------------------------------------------- */

class Worker extends EventEmitter {
  /*
   * options: env (default process.env; the consumed variables are removed from it), channel (a
   * duplex stream to use instead of DROVER_CHANNEL_FD, for tests), stateFile, idleGraceMs
   * (default 500), metricsIntervalMs (default 1000), exitOnCleanup (default true).
   */
  constructor(options = {}) {
    super();
    const env = options.env || process.env;
    this.app = env.DROVER_APP || null;
    this.workerId = intEnv(env.DROVER_WORKER_ID, -1);
    this.generation = intEnv(env.DROVER_GENERATION, -1);
    this.stateFile = options.stateFile || env.DROVER_STATE_FILE || null;
    this.idleGraceMs = options.idleGraceMs !== undefined ? options.idleGraceMs : 500;
    this.metricsIntervalMs = options.metricsIntervalMs || 1000;
    this.exitOnCleanup = options.exitOnCleanup !== false;
    this.listenFds = [];
    this.listenNames = [];
    this.phase = null;
    this.stopping = false;
    this._handlers = new Map();
    this._servers = new Map();
    this._registries = [];
    this._reported = new Set();
    this._pages = [];
    this._in = [];
    this._inLen = 0;
    this._sock = null;
    this._collecting = false;
    this._metricsTimer = null;
    this._heartbeatTimer = null;

    const pid = intEnv(env.LISTEN_PID, -1);
    const n = intEnv(env.LISTEN_FDS, 0);
    if (n > 0 && pid === process.pid) {
      const names = (env.LISTEN_FDNAMES || '').split(':');
      for (let i = 0; i < n; i++) {
        this.listenFds.push(3 + i);
        this.listenNames.push(names[i] || 'unknown');
      }
      delete env.LISTEN_FDS;
      delete env.LISTEN_PID;
      delete env.LISTEN_FDNAMES;
    }

    if (options.channel) {
      this._attach(options.channel);
    } else if (env.DROVER_CHANNEL_FD !== undefined) {
      const fd = intEnv(env.DROVER_CHANNEL_FD, -1);
      delete env.DROVER_CHANNEL_FD; // a child would only see a number naming some other fd
      try {
        if (fd < 0) throw new Error('not a number');
        this._attach(new net.Socket({ fd, readable: true, writable: true }));
      } catch (e) {
        warn(`DROVER_CHANNEL_FD: ${e.message}; running without a channel`);
      }
    }
    this.supervised = Boolean(this.app || this._sock);

    const usec = intEnv(env.WATCHDOG_USEC, 0);
    const wpid = intEnv(env.WATCHDOG_PID, process.pid);
    this.watchdogMs = usec > 0 && wpid === process.pid ? usec / 1000 : 0;
    if (this.watchdogMs > 0 && this._sock) {
      // From the event loop: a blocked loop stops them, which is what the watchdog is for.
      this._heartbeatTimer = setInterval(() => this.heartbeat(), Math.max(10, this.watchdogMs / 2));
      this._heartbeatTimer.unref();
      this.heartbeat();
    }
  }

  /* -- the channel -- */

  get connected() {
    return Boolean(this._sock);
  }

  _attach(sock) {
    this._sock = sock;
    if (typeof sock.unref === 'function') sock.unref(); // the channel alone keeps nobody alive
    sock.on('data', (chunk) => this._onData(chunk));
    sock.on('error', () => this._detach('error'));
    sock.on('end', () => this._detach('end'));
    sock.on('close', () => this._detach('close'));
  }

  _detach(why) {
    if (!this._sock) return;
    const sock = this._sock;
    this._sock = null;
    try {
      sock.destroy();
    } catch (_) {
      /* already gone */
    }
    for (const p of this._pages.splice(0)) p.reject(new Error('the channel closed'));
    this.emit('disconnect', why);
  }

  _onData(chunk) {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) break;
      this._in.push(chunk.subarray(start, nl));
      const line = Buffer.concat(this._in).toString('utf8');
      this._in = [];
      this._inLen = 0;
      start = nl + 1;
      if (line.length > LINE_MAX) {
        this._protocolError('a line over 1 MiB');
        return;
      }
      this._onLine(line);
      if (!this._sock) return;
    }
    if (start < chunk.length) {
      this._in.push(chunk.subarray(start));
      this._inLen += chunk.length - start;
      if (this._inLen > LINE_MAX) this._protocolError('a line over 1 MiB');
    }
  }

  _protocolError(why) {
    warn(`channel: ${why} from the master; closing the channel`);
    this._in = [];
    this._inLen = 0;
    this._detach('protocol');
  }

  _onLine(line) {
    let msg;
    try {
      msg = JSON.parse(line);
    } catch (_) {
      this._reportOnce('garbage', 'channel: a line that is not JSON skipped (reported once)');
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    // Lines the SDK does not understand are skipped, so a newer master can add messages.
    if (msg.type === 'phase' && PHASES.includes(msg.phase)) {
      this._onPhase(msg.phase, typeof msg.timeout_ms === 'number' ? msg.timeout_ms : -1);
    } else if (msg.type === 'collect') {
      this.sendMetrics().catch(() => {});
    } else if (msg.type === 'metrics_page') {
      const p = this._pages.shift();
      if (p) p.resolve(typeof msg.body === 'string' ? msg.body : '');
    }
  }

  _send(obj) {
    if (!this._sock) return false;
    const line = JSON.stringify(obj) + '\n';
    if (Buffer.byteLength(line) > LINE_MAX) {
      this._reportOnce(`big:${obj.type}`, `a '${obj.type}' message over 1 MiB not sent`);
      return false;
    }
    try {
      this._sock.write(line);
      return true;
    } catch (_) {
      this._detach('error');
      return false;
    }
  }

  _reportOnce(key, text) {
    if (this._reported.has(key)) return;
    this._reported.add(key);
    warn(text);
  }

  /* -- readiness, status, liveness, recycling -- */

  ready() {
    return this._send({ type: 'ready' });
  }

  status(text) {
    return this._send({ type: 'status', text: String(text).replace(/\n/g, ' ').slice(0, STATUS_MAX) });
  }

  heartbeat() {
    return this._send({ type: 'heartbeat' });
  }

  recycle(reason) {
    return this._send({ type: 'recycle', reason: String(reason || 'requested').slice(0, STATUS_MAX) });
  }

  /* -- the shared socket -- */

  /*
   * Serves server (an http/https/net server, or a request handler such as an Express app, for
   * which an http.Server is made) on the index-th inherited socket, or outside drover on
   * options.port (default $PORT, else 3000) and options.host. Resolves to the server once it
   * listens. Its connections are drained by the default drain.
   */
  listen(server, options = {}) {
    if (typeof server === 'function') server = http.createServer(server);
    if (!server || typeof server.listen !== 'function') throw new TypeError('listen: not a server');
    const index = options.index || 0;
    const st = { draining: false, graceOver: false };
    this._servers.set(server, st);
    if (server instanceof http.Server || typeof server.closeIdleConnections === 'function') {
      server.prependListener('request', (req, res) => {
        // A request that arrives while draining is answered, then its connection closes: the
        // client reconnects to another worker and loses nothing.
        if (st.draining && !res.headersSent) res.setHeader('Connection', 'close');
      });
    }
    return new Promise((resolve, reject) => {
      const onError = (e) => reject(e);
      server.once('error', onError);
      const done = () => {
        server.removeListener('error', onError);
        resolve(server);
      };
      if (index < this.listenFds.length) {
        server.listen({ fd: this.listenFds[index] }, done);
      } else {
        const port = options.port !== undefined ? options.port : intEnv(process.env.PORT, 3000);
        server.listen(port, options.host, done);
      }
    });
  }

  /*
   * The default drain of every server given to listen(): stop accepting (the master keeps the
   * socket, so new connections go to the other workers); answer what arrives with
   * "Connection: close"; after idleGraceMs close the idle keep-alive connections (a client
   * that was about to send on one has had the grace to do so); resolve once every connection
   * ended, or just before timeoutMs, when the rest are cut.
   */
  drain(timeoutMs = -1) {
    const all = [];
    for (const [server, st] of this._servers) {
      if (st.draining) continue;
      st.draining = true;
      all.push(new Promise((resolve) => {
        const timers = [];
        const finish = () => {
          timers.forEach((t) => clearTimeout(t) || clearInterval(t));
          resolve();
        };
        // net.Server's close, not http.Server's: since Node 19 the latter also closes the
        // idle keep-alive connections at once, racing the requests their clients are sending.
        try {
          net.Server.prototype.close.call(server, finish);
        } catch (_) {
          finish();
          return;
        }
        if (typeof server.closeIdleConnections === 'function') {
          timers.push(setTimeout(() => {
            st.graceOver = true;
            server.closeIdleConnections();
            timers.push(setInterval(() => server.closeIdleConnections(), 50));
          }, this.idleGraceMs));
        }
        if (timeoutMs > 0) {
          timers.push(setTimeout(() => {
            if (typeof server.closeAllConnections === 'function') server.closeAllConnections();
            finish();
          }, Math.max(timeoutMs - 250, timeoutMs / 2)));
        }
      }));
    }
    return Promise.all(all).then(() => undefined);
  }

  /* -- the shutdown phases -- */

  /*
   * Runs fn({ phase, timeoutMs }) when the master enters phase; phase_done is sent once every
   * function of that phase settled (a rejection is logged and still counts as done). Without
   * functions a phase is acknowledged at once; the default drain (above) runs in any case, and
   * after cleanup the process exits (unless exitOnCleanup is false).
   */
  onPhase(phase, fn) {
    if (!PHASES.includes(phase)) throw new RangeError(`onPhase: unknown phase '${phase}'`);
    if (typeof fn !== 'function') throw new TypeError('onPhase: not a function');
    if (!this._handlers.has(phase)) this._handlers.set(phase, []);
    this._handlers.get(phase).push(fn);
    return this;
  }

  _onPhase(phase, timeoutMs) {
    if (phase === 'cleanup' && this.exitOnCleanup) {
      // After cleanup the master prods what is still alive with SIGTERM: that is our exit.
      process.once('SIGTERM', () => process.exit(0));
    }
    if (!this.stopping && this._sock && typeof this._sock.ref === 'function') {
      // From the first phase on the channel holds the process: a drained server must not let
      // Node exit before save, close and cleanup ran.
      this._sock.ref();
    }
    this.stopping = true;
    this.phase = phase;
    this.emit('phase', phase, timeoutMs);
    const work = (this._handlers.get(phase) || []).map((fn) => Promise.resolve()
      .then(() => fn({ phase, timeoutMs }))
      .catch((e) => warn(`phase ${phase}: ${e && e.stack ? e.stack : e}`)));
    if (phase === 'drain') work.push(this.drain(timeoutMs));
    Promise.all(work).then(async () => {
      if (phase === 'cleanup') {
        // The final counts: the master keeps an exited worker's last snapshot in its sums.
        await this.sendMetrics().catch(() => {});
      }
      this._send({ type: 'phase_done', phase });
      if (phase === 'cleanup' && this.exitOnCleanup) this._exitAfterFlush();
    });
  }

  _exitAfterFlush() {
    const sock = this._sock;
    const exit = () => process.exit(0);
    if (!sock || !sock.writableLength) {
      setImmediate(exit);
      return;
    }
    sock.once('drain', exit);
    setTimeout(exit, 1000).unref();
  }

  /* -- saved state, handed from one worker of a slot to the next -- */

  /* Writes value (JSON; a string or Buffer as is) atomically: temp file, fsync, rename. */
  saveState(value) {
    if (!this.stateFile) return false;
    const data = Buffer.isBuffer(value) || typeof value === 'string' ? value : JSON.stringify(value);
    const tmp = `${this.stateFile}.tmp.${process.pid}`;
    this._sweepTemporaries();
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    try {
      fs.renameSync(tmp, this.stateFile);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw e;
    }
    return true;
  }

  /* Temporaries of this state file left by workers killed while saving (their pid is gone). */
  _sweepTemporaries() {
    const dir = path.dirname(this.stateFile);
    const prefix = `${path.basename(this.stateFile)}.tmp.`;
    let names = [];
    try {
      names = fs.readdirSync(dir);
    } catch (_) {
      return;
    }
    for (const name of names) {
      if (!name.startsWith(prefix)) continue;
      const pid = Number(name.slice(prefix.length));
      if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) continue;
      try {
        process.kill(pid, 0);
      } catch (e) {
        if (e.code === 'ESRCH') fs.rmSync(path.join(dir, name), { force: true });
      }
    }
  }

  /* The saved state parsed as JSON; null when there is none (or it does not parse). */
  loadState() {
    const raw = this.loadStateRaw();
    if (raw === null) return null;
    try {
      return JSON.parse(raw.toString('utf8'));
    } catch (_) {
      warn(`${this.stateFile}: saved state is not JSON; ignored`);
      return null;
    }
  }

  loadStateRaw() {
    if (!this.stateFile) return null;
    try {
      return fs.readFileSync(this.stateFile);
    } catch (e) {
      if (e.code === 'ENOENT') return null;
      throw e;
    }
  }

  /* -- metrics -- */

  /*
   * Sends register's metrics (a prom-client Registry) as drover snapshots every
   * metricsIntervalMs, on the master's collect, and at cleanup.
   */
  useRegistry(register) {
    if (!register || typeof register.getMetricsAsJSON !== 'function') {
      throw new TypeError('useRegistry: not a prom-client registry');
    }
    this._registries.push(register);
    if (this._sock && !this._metricsTimer) {
      this._metricsTimer = setInterval(() => this.sendMetrics().catch(() => {}), this.metricsIntervalMs);
      this._metricsTimer.unref();
      setImmediate(() => this.sendMetrics().catch(() => {}));
    }
    return this;
  }

  async collect() {
    const families = [];
    for (const reg of this._registries) {
      let json;
      try {
        json = await reg.getMetricsAsJSON();
      } catch (e) {
        this._reportOnce(`throw:${e && e.message}`, `a registry threw, its metrics skipped: ${e && e.message}`);
        continue;
      }
      const out = fromPromClient(json, { maxSeries: MAX_SERIES - families.length });
      for (const r of out.refused) {
        this._reportOnce(`refused:${r.name}:${r.why}`, `metric family ${r.name} not sent: ${r.why}`);
      }
      families.push(...out.families);
    }
    return families;
  }

  async sendMetrics() {
    if (!this._sock || this._collecting || this._registries.length === 0) return false;
    if (this._sock.writableLength > OUT_MAX) return false; // the master is not reading
    this._collecting = true;
    try {
      const families = await this.collect();
      return this._send({ type: 'metrics', families });
    } finally {
      this._collecting = false;
    }
  }

  /* drover's combined page (every worker's metrics merged), to serve on the app's own port. */
  getMetricsPage() {
    if (!this._sock) return Promise.reject(new Error('not running under drover'));
    return new Promise((resolve, reject) => {
      this._pages.push({ resolve, reject });
      this._send({ type: 'get_metrics', format: 'text' });
    });
  }

  close() {
    if (this._metricsTimer) clearInterval(this._metricsTimer);
    if (this._heartbeatTimer) clearInterval(this._heartbeatTimer);
    this._metricsTimer = this._heartbeatTimer = null;
    if (this._sock) this._sock.end();
  }
}

/* ---- the process's worker, made on first use ---------------------------------------------- */

let instance = null;
function worker() {
  if (!instance) instance = new Worker();
  return instance;
}

const api = {
  Worker,
  PHASES,
  fromPromClient,
  worker,
  get supervised() { return worker().supervised; },
  get app() { return worker().app; },
  get workerId() { return worker().workerId; },
  get generation() { return worker().generation; },
  get stateFile() { return worker().stateFile; },
  get stopping() { return worker().stopping; },
  get listenFds() { return worker().listenFds.slice(); },
};
for (const name of ['listen', 'ready', 'status', 'heartbeat', 'recycle', 'onPhase', 'drain', 'saveState',
  'loadState', 'loadStateRaw', 'useRegistry', 'sendMetrics', 'getMetricsPage', 'on', 'once', 'off', 'close']) {
  api[name] = (...args) => {
    const w = worker();
    const r = w[name](...args);
    return r === w ? api : r;
  };
}
module.exports = api;
// Under drover the worker starts with the module: heartbeats must not wait for a first call.
if (process.env.DROVER_CHANNEL_FD !== undefined) worker();
