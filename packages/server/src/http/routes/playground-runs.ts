import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import type { DependencyContainer, Engine, EngineOptions, GenerateResult } from '@switchyard/core';
import {
  type BenchReport,
  benchReport,
  makeWorkload,
  runWorkload,
  summarize,
  type WorkloadOptions,
} from '../../bench.js';
import { createEngine } from '../../create-engine.js';
import type { RunPlan } from './playground-request.js';

/** One config's figures: `switchyard bench --json`'s, plus distributions and gauges over time. */
export interface ConfigResult extends BenchReport {
  name: string;
  prefix_hit_rate: number;
  preemptions: number;
  kv_peak_usage: number;
  e2e_ms: ReturnType<typeof summarize>;
  /** Values at the quantiles 0, 0.01, …, 1 (101 points) of each latency, for CDF charts. */
  cdf: { ttft_ms: number[]; itl_ms: number[]; e2e_ms: number[] };
  /** Gauges sampled while the workload ran (ms since its start). */
  timeline: { t_ms: number[]; kv_usage: number[]; running: number[]; waiting: number[] };
  /** The engine as built: scheduler, KV manager, blocks, context. */
  engine: Engine['info'] & { policy: string };
  /** The `switchyard bench` command that runs this config on this workload. */
  cli: string;
  build_ms: number;
}

export type RunEvent =
  | { type: 'start'; id: string; configs: number }
  | { type: 'config-start'; index: number; name: string }
  | { type: 'progress'; index: number; finished: number; total: number }
  | { type: 'config-done'; index: number; result: ConfigResult }
  | { type: 'error'; index: number; message: string }
  | { type: 'done'; id: string; status: Run['status'] };

export interface Run {
  id: string;
  status: 'running' | 'done' | 'failed' | 'cancelled';
  created: number;
  request: RunPlan['body'];
  results: (ConfigResult | { name: string; error: string })[];
}

/**
 * Comparison runs, one at a time, kept in memory (the newest `maxRuns`). Each config gets its own
 * engine on the served model's checkpoint, built, run and closed in turn.
 */
export class RunStore {
  private readonly runs = new Map<string, Run>();
  private active: { run: Run; controller: AbortController } | undefined;

  constructor(
    private readonly container: DependencyContainer,
    private readonly maxRuns = 16,
  ) {}

  get busy(): Run | undefined {
    return this.active?.run;
  }

  /** Cancels the run if it is the one running: its requests are aborted, later configs skipped. */
  cancel(id: string): boolean {
    if (this.active?.run.id !== id) return false;
    this.active.controller.abort();
    return true;
  }

  get(id: string): Run | undefined {
    return this.runs.get(id);
  }

  list(): Pick<Run, 'id' | 'status' | 'created'>[] {
    return [...this.runs.values()].map(({ id, status, created }) => ({ id, status, created }));
  }

  /** Starts a run (the caller checked `busy`); `onEvent` sees its progress until it ends. */
  start(plan: RunPlan, onEvent: (e: RunEvent) => void): Run {
    const run: Run = {
      id: randomUUID(),
      status: 'running',
      created: Date.now(),
      request: plan.body,
      results: [],
    };
    const controller = new AbortController();
    this.active = { run, controller };
    this.runs.set(run.id, run);
    while (this.runs.size > this.maxRuns) this.runs.delete(this.runs.keys().next().value!);
    void this.execute(run, plan, controller.signal, onEvent).finally(() => {
      this.active = undefined;
    });
    return run;
  }

  private async execute(run: Run, plan: RunPlan, signal: AbortSignal, onEvent: (e: RunEvent) => void) {
    onEvent({ type: 'start', id: run.id, configs: plan.options.length });
    for (const [index, options] of plan.options.entries()) {
      const name = plan.names[index];
      if (signal.aborted) {
        run.results.push({ name, error: 'the run was cancelled' });
        onEvent({ type: 'error', index, message: 'the run was cancelled' });
        continue;
      }
      onEvent({ type: 'config-start', index, name });
      try {
        const result = await runConfig(
          name,
          options,
          plan.workload,
          this.container,
          (finished, total) => onEvent({ type: 'progress', index, finished, total }),
          signal,
        );
        run.results.push(result);
        onEvent({ type: 'config-done', index, result });
      } catch (e) {
        const message = (e as Error).message;
        run.results.push({ name, error: message });
        run.status = signal.aborted ? 'cancelled' : 'failed';
        onEvent({ type: 'error', index, message });
      }
    }
    if (run.status === 'running') run.status = 'done';
    onEvent({ type: 'done', id: run.id, status: run.status });
  }
}

async function runConfig(
  name: string,
  options: EngineOptions,
  workloadOptions: WorkloadOptions,
  container: DependencyContainer,
  onProgress: (finished: number, total: number) => void,
  signal: AbortSignal,
): Promise<ConfigResult> {
  const t0 = performance.now();
  const engine = await createEngine({ ...options, container });
  const buildMs = performance.now() - t0;
  try {
    const w = makeWorkload(workloadOptions);
    const total = w.requests.length;
    const timeline: ConfigResult['timeline'] = { t_ms: [], kv_usage: [], running: [], waiting: [] };
    const start = performance.now();
    const sample = () => {
      const s = engine.stats();
      timeline.t_ms.push(performance.now() - start);
      timeline.kv_usage.push(s.kvUsage);
      timeline.running.push(s.numRunning);
      timeline.waiting.push(s.numWaiting);
    };
    sample();
    const timer = setInterval(sample, 10);
    let finished = 0;
    let lastReport = 0;
    let outcome: { results: GenerateResult[]; durationS: number };
    try {
      outcome = await runWorkload(
        engine,
        w,
        () => {
          finished++;
          sample();
          const now = performance.now();
          if (now - lastReport > 50 || finished === total) {
            lastReport = now;
            onProgress(finished, total);
          }
        },
        signal,
      );
    } finally {
      clearInterval(timer);
    }
    sample();
    const { results, durationS } = outcome;
    const stats = engine.stats();
    const e2e = results.map((r) => r.metrics.e2eMs);
    return {
      name,
      ...benchReport(results, durationS),
      e2e_ms: summarize(e2e),
      prefix_hit_rate: stats.prefixHitRate,
      preemptions: stats.numPreemptions,
      kv_peak_usage: stats.kvPeakUsage,
      cdf: {
        ttft_ms: quantiles(results.map((r) => r.metrics.ttftMs)),
        itl_ms: quantiles(results.flatMap((r) => r.metrics.itlMs)),
        e2e_ms: quantiles(e2e),
      },
      timeline: thin(timeline, 600),
      engine: { ...engine.info, policy: options.policy ?? 'fcfs' },
      cli: benchCommand(options, workloadOptions),
      build_ms: buildMs,
    };
  } finally {
    await engine.close();
  }
}

/** The values at quantiles 0, 0.01, …, 1 (empty for no values). */
export function quantiles(xs: number[]): number[] {
  if (xs.length === 0) return [];
  const s = [...xs].sort((a, b) => a - b);
  return Array.from(
    { length: 101 },
    (_, i) => s[Math.min(s.length - 1, Math.round((i / 100) * (s.length - 1)))],
  );
}

/** Keeps at most `max` samples, evenly spaced (the first and last kept). */
function thin(t: ConfigResult['timeline'], max: number): ConfigResult['timeline'] {
  const n = t.t_ms.length;
  if (n <= max) return t;
  const pick = Array.from({ length: max }, (_, i) => Math.round((i * (n - 1)) / (max - 1)));
  return {
    t_ms: pick.map((i) => t.t_ms[i]),
    kv_usage: pick.map((i) => t.kv_usage[i]),
    running: pick.map((i) => t.running[i]),
    waiting: pick.map((i) => t.waiting[i]),
  };
}

/** `switchyard bench` flags that build the same engine and send the same seeded workload. */
export function benchCommand(o: EngineOptions, w: WorkloadOptions): string {
  const args = ['npx', 'switchyard', 'bench', '--model', resolve(o.model)];
  const flag = (name: string, v: unknown) => {
    if (v !== undefined && v !== null) args.push(`--${name}`, String(v));
  };
  flag('scheduler', o.scheduler);
  flag('attention', o.attention);
  flag('policy', o.policy);
  flag('device', o.device);
  flag('dtype', o.dtype);
  flag('quantization', o.quantization);
  flag('block-size', o.blockSize);
  flag('kv-cache-tokens', o.kvCacheTokens);
  flag('max-num-seqs', o.maxNumSeqs);
  flag('max-num-batched-tokens', o.maxNumBatchedTokens);
  if (o.enablePrefixCaching === false) args.push('--no-prefix-caching');
  if (o.enableChunkedPrefill === false) args.push('--no-chunked-prefill');
  flag('workload', w.workload);
  flag('num-requests', w.numRequests);
  flag('input-len', w.inputLen);
  flag('output-len', w.outputLen);
  flag('range-ratio', w.rangeRatio);
  if (w.workload === 'shared-prefix') {
    flag('shared-prefix-len', w.sharedPrefixLen);
    flag('num-prefixes', w.numPrefixes);
  }
  if (w.workload === 'multi-turn') flag('num-turns', w.numTurns);
  if (w.workload === 'images') flag('num-images', w.numImages);
  flag('request-rate', Number.isFinite(w.requestRate) ? w.requestRate : 'inf');
  flag('seed', w.seed);
  args.push('--json');
  return args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(' ');
}
