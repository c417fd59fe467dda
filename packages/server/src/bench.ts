import {
  Checkpoint,
  type EngineOptions,
  type GenerateRequest,
  type GenerateResult,
  Rng,
  SwitchyardError,
} from '@switchyard/core';
import { httpBenchReport, runHttpBench } from './bench-http.js';
import { createEngine } from './create-engine.js';
import { ENGINE_FLAGS, parseFlags } from './flags.js';

export interface Workload {
  requests: GenerateRequest[];
  /** Seconds after the start at which each request is sent. */
  arrivals: number[];
}

export interface WorkloadOptions {
  workload: 'random' | 'shared-prefix';
  numRequests: number;
  inputLen: number;
  outputLen: number;
  /** Lengths vary uniformly within ±rangeRatio of the given lengths (as vLLM's random dataset). */
  rangeRatio: number;
  sharedPrefixLen: number;
  numPrefixes: number;
  /** Requests per second (Poisson arrivals), or Infinity for all at once. */
  requestRate: number;
  seed: number;
  vocabSize: number;
}

/** Seeded synthetic requests: the same options always give the same token ids and arrivals. */
export function makeWorkload(o: WorkloadOptions): Workload {
  const rng = new Rng(o.seed);
  const int = (lo: number, hi: number) => lo + Math.floor(rng.next() * (hi - lo + 1));
  const around = (n: number) =>
    Math.max(1, int(Math.round(n * (1 - o.rangeRatio)), Math.round(n * (1 + o.rangeRatio))));
  // Ids from the middle of the vocabulary keep clear of special tokens at either end.
  const token = () => int(Math.floor(o.vocabSize * 0.1), Math.floor(o.vocabSize * 0.9));
  const prefixes = Array.from({ length: o.numPrefixes }, () =>
    Array.from({ length: o.sharedPrefixLen }, token),
  );
  const requests: GenerateRequest[] = [];
  const arrivals: number[] = [];
  let t = 0;
  for (let i = 0; i < o.numRequests; i++) {
    const own = Array.from({ length: around(o.inputLen) }, token);
    const promptIds = o.workload === 'shared-prefix' ? [...prefixes[i % o.numPrefixes], ...own] : own;
    requests.push({
      id: `bench-${i}`,
      promptIds,
      sampling: { maxTokens: around(o.outputLen), ignoreEos: true },
    });
    arrivals.push(t);
    if (Number.isFinite(o.requestRate)) t += -Math.log(1 - rng.next()) / o.requestRate;
  }
  return { requests, arrivals };
}

export interface Summary {
  mean: number;
  p50: number;
  p99: number;
}

export function summarize(xs: number[]): Summary {
  if (xs.length === 0) return { mean: 0, p50: 0, p99: 0 };
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))];
  return { mean: s.reduce((a, b) => a + b, 0) / s.length, p50: q(0.5), p99: q(0.99) };
}

export type BenchReport = ReturnType<typeof benchReport>;

/** The figures `switchyard bench --json` prints, from finished results. */
export function benchReport(results: GenerateResult[], durationS: number) {
  const out = results.reduce((a, r) => a + r.usage.completionTokens, 0);
  const inp = results.reduce((a, r) => a + r.usage.promptTokens, 0);
  const tpot = results
    .filter((r) => r.usage.completionTokens > 1)
    .map((r) => (r.metrics.e2eMs - r.metrics.ttftMs) / (r.usage.completionTokens - 1));
  return {
    requests: results.length,
    duration_s: durationS,
    output_tok_s: out / durationS,
    total_tok_s: (out + inp) / durationS,
    ttft_ms: summarize(results.map((r) => r.metrics.ttftMs)),
    tpot_ms: summarize(tpot),
    itl_ms: summarize(results.flatMap((r) => r.metrics.itlMs)),
  };
}

/** The options of `switchyard bench`. */
export const BENCH_FLAGS = {
  ...ENGINE_FLAGS,
  workload: { type: 'string', default: 'random' },
  'num-requests': { type: 'string', default: '64' },
  'input-len': { type: 'string', default: '128' },
  'output-len': { type: 'string', default: '64' },
  'range-ratio': { type: 'string', default: '0' },
  'shared-prefix-len': { type: 'string', default: '256' },
  'num-prefixes': { type: 'string', default: '4' },
  'request-rate': { type: 'string', default: 'inf' },
  seed: { type: 'string', default: '0' },
  url: { type: 'string' },
} as const;

export async function runBench(
  args: string[],
  toEngineOptions: (v: Record<string, unknown>) => EngineOptions,
): Promise<number> {
  const values = parseFlags(args, BENCH_FLAGS);
  const workload = values.workload;
  if (workload !== 'random' && workload !== 'shared-prefix') {
    throw new SwitchyardError(`--workload must be random or shared-prefix, got '${workload}'`);
  }
  const num = (name: string, min = 0): number => {
    const v = (values as unknown as Record<string, string>)[name];
    const n = v === 'inf' ? Number.POSITIVE_INFINITY : Number(v);
    if (Number.isNaN(n) || n < min)
      throw new SwitchyardError(`--${name} must be a number ≥ ${min}, got '${v}'`);
    return n;
  };
  const workloadOf = (vocabSize: number) =>
    makeWorkload({
      workload,
      numRequests: num('num-requests', 1),
      inputLen: num('input-len', 1),
      outputLen: num('output-len', 1),
      rangeRatio: num('range-ratio'),
      sharedPrefixLen: num('shared-prefix-len'),
      numPrefixes: num('num-prefixes', 1),
      requestRate: num('request-rate'),
      seed: num('seed'),
      vocabSize,
    });
  const print = (report: object) =>
    process.stdout.write(
      values.json ? `${JSON.stringify(report)}\n` : `${JSON.stringify(report, null, 2)}\n`,
    );

  if (values.url) {
    // Over HTTP: the checkpoint only tells the vocabulary size, so both sides send the same ids.
    if (typeof values.model !== 'string')
      throw new SwitchyardError('--model DIR is required (its vocabulary seeds the prompts)');
    const vocab = Number(Checkpoint.open(values.model).textConfig.vocab_size);
    const { results, durationS } = await runHttpBench(values.url.replace(/\/$/, ''), workloadOf(vocab), {
      apiKey: process.env.SWITCHYARD_API_KEY,
    });
    print({ ...httpBenchReport(results, durationS), config: { ...values, json: undefined } });
    return 0;
  }

  const options = toEngineOptions(values);
  const engine = await createEngine(options);
  try {
    const w = workloadOf(engine.info.vocabSize);
    const t0 = performance.now();
    const results = await Promise.all(
      w.requests.map(async (r, i) => {
        const wait = t0 + w.arrivals[i] * 1000 - performance.now();
        if (wait > 0) await new Promise((res) => setTimeout(res, wait));
        const [result] = await engine.generate([r]);
        return result;
      }),
    );
    const durationS = (performance.now() - t0) / 1000;
    const stats = engine.stats();
    const report = {
      ...benchReport(results, durationS),
      prefix_hit_rate: stats.prefixHitRate,
      preemptions: stats.numPreemptions,
      kv_peak_usage: stats.kvPeakUsage,
      config: { ...engine.info, policy: options.policy ?? 'fcfs', ...values, json: undefined },
    };
    print(report);
    return 0;
  } finally {
    await engine.close();
  }
}
