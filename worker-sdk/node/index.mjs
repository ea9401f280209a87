// The ESM face of drover-worker: the same module as index.js.
import drover from './index.js';

export default drover;
export const {
  Worker, PHASES, fromPromClient, worker, listen, ready, status, heartbeat, recycle, onPhase, drain,
  saveState, loadState, loadStateRaw, useRegistry, sendMetrics, getMetricsPage, on, once, off, close,
} = drover;
