// Type declarations for drover-worker.
import { EventEmitter } from 'events';
import type { Server } from 'net';

export type Phase = 'initiated' | 'drain' | 'save' | 'close' | 'cleanup' | 'complete';
export const PHASES: readonly Phase[];

export interface PhaseContext {
  phase: Phase;
  /** The master's limit for this phase in milliseconds, -1 when it gave none. */
  timeoutMs: number;
}

export interface ListenOptions {
  /** Which inherited socket (fd 3 + index); default 0. */
  index?: number;
  /** Outside drover: the port to bind (default $PORT, else 3000). */
  port?: number;
  host?: string;
}

/** The part of prom-client's Registry the SDK uses. */
export interface RegistryLike {
  getMetricsAsJSON(): Promise<unknown[]> | unknown[];
}

export interface Family {
  name: string;
  type: 'counter' | 'gauge' | 'histogram';
  help: string;
  agg?: 'sum' | 'max' | 'min' | 'avg' | 'worker';
  buckets?: number[];
  samples: Array<{ labels: Record<string, string>; value?: number; counts?: number[]; sum?: number; count?: number }>;
}

export interface WorkerOptions {
  env?: NodeJS.ProcessEnv;
  channel?: NodeJS.ReadWriteStream;
  stateFile?: string;
  /** How long idle keep-alive connections may still send a request at drain; default 500. */
  idleGraceMs?: number;
  /** How often snapshots are sent; default 1000. */
  metricsIntervalMs?: number;
  /** Exit after answering cleanup; default true. */
  exitOnCleanup?: boolean;
}

export class Worker extends EventEmitter {
  constructor(options?: WorkerOptions);
  readonly supervised: boolean;
  readonly connected: boolean;
  readonly app: string | null;
  readonly workerId: number;
  readonly generation: number;
  readonly stateFile: string | null;
  readonly listenFds: number[];
  readonly listenNames: string[];
  readonly watchdogMs: number;
  readonly stopping: boolean;
  readonly phase: Phase | null;
  listen<S extends Server>(server: S, options?: ListenOptions): Promise<S>;
  listen(handler: (req: any, res: any) => void, options?: ListenOptions): Promise<Server>;
  ready(): boolean;
  status(text: string): boolean;
  heartbeat(): boolean;
  recycle(reason?: string): boolean;
  onPhase(phase: Phase, fn: (ctx: PhaseContext) => unknown | Promise<unknown>): this;
  drain(timeoutMs?: number): Promise<void>;
  saveState(value: unknown): boolean;
  loadState<T = unknown>(): T | null;
  loadStateRaw(): Buffer | null;
  useRegistry(register: RegistryLike): this;
  collect(): Promise<Family[]>;
  sendMetrics(): Promise<boolean>;
  getMetricsPage(): Promise<string>;
  close(): void;
  on(event: 'phase', listener: (phase: Phase, timeoutMs: number) => void): this;
  on(event: 'disconnect', listener: (why: string) => void): this;
}

export function fromPromClient(metrics: unknown[], options?: { maxSeries?: number }):
  { families: Family[]; refused: Array<{ name: string; why: string }> };
export function worker(): Worker;

export const supervised: boolean;
export const app: string | null;
export const workerId: number;
export const generation: number;
export const stateFile: string | null;
export const stopping: boolean;
export const listenFds: number[];
export function listen<S extends Server>(server: S, options?: ListenOptions): Promise<S>;
export function listen(handler: (req: any, res: any) => void, options?: ListenOptions): Promise<Server>;
export function ready(): boolean;
export function status(text: string): boolean;
export function heartbeat(): boolean;
export function recycle(reason?: string): boolean;
export function onPhase(phase: Phase, fn: (ctx: PhaseContext) => unknown | Promise<unknown>): typeof import('./index');
export function drain(timeoutMs?: number): Promise<void>;
export function saveState(value: unknown): boolean;
export function loadState<T = unknown>(): T | null;
export function loadStateRaw(): Buffer | null;
export function useRegistry(register: RegistryLike): typeof import('./index');
export function sendMetrics(): Promise<boolean>;
export function getMetricsPage(): Promise<string>;
export function on(event: string, listener: (...args: any[]) => void): Worker;
export function once(event: string, listener: (...args: any[]) => void): Worker;
export function off(event: string, listener: (...args: any[]) => void): Worker;
export function close(): void;
