'use strict';
// An Express service as the Node world writes them: prom-client metrics, pino logs, /health,
// a graceful drain and saved state, with drover-worker. Run it under drover with drover.ini
// next to this file (see the README, "Running a Node.js app"), or alone: `node app.js` serves
// on $PORT (3000) and every drover call is a no-op.
const drover = require('../../node'); // in an app of your own: require('drover-worker')
const express = require('express');
const client = require('prom-client');
const pino = require('pino');

const log = pino({ base: { pid: process.pid, slot: drover.workerId } });
client.collectDefaultMetrics();
const requests = new client.Counter({
  name: 'app_http_requests_total', help: 'HTTP requests served', labelNames: ['route', 'code'],
});
const latency = new client.Histogram({
  name: 'app_http_request_duration_seconds', help: 'HTTP request latency', labelNames: ['route'],
  buckets: [0.005, 0.025, 0.1, 0.5, 2.5],
});
const inflight = new client.Gauge({ name: 'app_http_inflight', help: 'requests in progress' });
const hitsGauge = new client.Gauge({
  name: 'app_slot_hits', help: 'hits of this slot, kept across restarts', aggregator: 'max',
});

// Saved state: what the previous worker of this slot left at its save phase.
const saved = drover.loadState() || { hits: 0 };
let hits = saved.hits;
hitsGauge.set(hits);

const app = express();
app.use((req, res, next) => {
  const end = latency.startTimer({ route: req.path });
  inflight.inc();
  res.on('finish', () => {
    end();
    inflight.dec();
    requests.inc({ route: req.path, code: String(res.statusCode) });
  });
  next();
});
app.get('/', (req, res) => {
  hits += 1;
  hitsGauge.set(hits);
  res.json({ pid: process.pid, slot: drover.workerId, generation: drover.generation, hits });
});
app.get('/sleep', (req, res) => {
  const ms = Math.min(Number(req.query.ms) || 0, 60000);
  setTimeout(() => res.json({ pid: process.pid, slept: ms }), ms);
});
// Blocks the event loop: heartbeats stop, which the watchdog notices.
app.get('/block', (req, res) => {
  const end = Date.now() + Math.min(Number(req.query.ms) || 0, 60000);
  while (Date.now() < end);
  res.json({ pid: process.pid });
});
app.get('/health', (req, res) => {
  res.status(drover.stopping ? 503 : 200).json({ ok: !drover.stopping, pid: process.pid });
});
// Outside drover this worker's own metrics; under drover the merged page is drover's /metrics.
app.get('/metrics', async (req, res) => {
  res.type(client.register.contentType).send(await client.register.metrics());
});

drover.useRegistry(client.register);
// drain: the SDK's default drain runs for the server given to listen(); this only logs.
drover.onPhase('drain', () => log.info({ phase: 'drain' }, 'draining'));
drover.onPhase('save', () => {
  drover.saveState({ hits });
  log.info({ phase: 'save', hits }, 'state saved');
});
drover.onPhase('close', () => log.info({ phase: 'close' }, 'closing'));

drover.listen(app).then((server) => {
  log.info({ address: server.address() }, 'listening');
  drover.ready();
});
