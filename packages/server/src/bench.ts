import {
  Checkpoint,
  type Engine,
  type EngineOptions,
  type GenerateRequest,
  type GenerateResult,
  Rng,
  SwitchyardError,
} from '@switchyard/core';
import { httpBenchReport, runHttpBench } from './bench-http.js';
import { seededPicture } from './bench-images.js';
import { createEngine } from './create-engine.js';
import { ENGINE_FLAGS, parseFlags } from './flags.js';

export interface Workload {
  requests: GenerateRequest[];
  /** Seconds after the start at which each request is sent. */
  arrivals: number[];
  /**
   * For chained requests (multi-turn): the index of the request that must finish before this one
   * is sent (it is sent at its arrival time or then, whichever is later); -1 for none.
   */
  after?: number[];
}

/** The workloads `makeWorkload` knows, as `--workload` spells them. */
export const WORKLOADS = ['random', 'shared-prefix', 'multi-turn', 'images'] as const;
export type WorkloadName = (typeof WORKLOADS)[number];

export interface WorkloadOptions {
  /**
   * random: independent prompts; shared-prefix: each prompt starts with one of `numPrefixes`
   * prefixes; multi-turn: conversations of `numTurns` turns, each turn's prompt the whole history
   * (earlier prompts and seeded replies of the earlier turns' output length) plus a new user turn,
   * sent when the previous turn finished; images: each prompt is one of `numImages` seeded
   * pictures followed by its own tokens.
   */
  workload: WorkloadName;
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
  /** Turns per conversation (multi-turn; default 4). `requestRate` then counts conversations. */
  numTurns?: number;
  /** Distinct pictures (images; default 4). */
  numImages?: number;
  /** The model's image placeholder token: prompt tokens avoid it; the images workload puts it first. */
  imageTokenId?: number;
}

/** Seeded synthetic requests: the same options always give the same token ids and arrivals. */
export function makeWorkload(o: WorkloadOptions): Workload {
  const rng = new Rng(o.seed);
  const int = (lo: number, hi: number) => lo + Math.floor(rng.next() * (hi - lo + 1));
  const around = (n: number) =>
    Math.max(1, int(Math.round(n * (1 - o.rangeRatio)), Math.round(n * (1 + o.rangeRatio))));
  // Ids from the middle of the vocabulary keep clear of special tokens at either end.
  const token = () => {
    const t = int(Math.floor(o.vocabSize * 0.1), Math.floor(o.vocabSize * 0.9));
    return t === o.imageTokenId ? t - 1 : t;
  };
  if (o.workload === 'multi-turn') return multiTurn(o, rng, around, token);
  if (o.workload === 'images') return withImages(o, rng, around, token);
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

/** Next gap of a Poisson process at `rate` per second (0 when everything arrives at once). */
const gap = (rng: Rng, rate: number) => (Number.isFinite(rate) ? -Math.log(1 - rng.next()) / rate : 0);

function multiTurn(o: WorkloadOptions, rng: Rng, around: (n: number) => number, token: () => number) {
  const turns = o.numTurns ?? 4;
  if (!Number.isInteger(turns) || turns < 1)
    throw new SwitchyardError(`--num-turns must be a positive integer, got ${turns}`);
  const requests: GenerateRequest[] = [];
  const arrivals: number[] = [];
  const after: number[] = [];
  let history: number[] = [];
  let t = 0;
  for (let i = 0; i < o.numRequests; i++) {
    const turn = i % turns;
    if (turn === 0) {
      history = [];
      if (i > 0) t += gap(rng, o.requestRate);
    }
    const promptIds = [...history, ...Array.from({ length: around(o.inputLen) }, token)];
    const maxTokens = around(o.outputLen);
    requests.push({ id: `bench-${i}`, promptIds, sampling: { maxTokens, ignoreEos: true } });
    arrivals.push(t);
    after.push(turn === 0 ? -1 : i - 1);
    // The reply in the next turn's history: seeded tokens as long as this turn's output.
    history = [...promptIds, ...Array.from({ length: maxTokens }, token)];
  }
  return { requests, arrivals, after };
}

function withImages(o: WorkloadOptions, rng: Rng, around: (n: number) => number, token: () => number) {
  const numImages = o.numImages ?? 4;
  if (!Number.isInteger(numImages) || numImages < 1)
    throw new SwitchyardError(`--num-images must be a positive integer, got ${numImages}`);
  if (o.imageTokenId === undefined)
    throw new SwitchyardError('the images workload needs a vision-language model (one with an image token)');
  const pictures = Array.from({ length: numImages }, () => seededPicture(rng));
  const requests: GenerateRequest[] = [];
  const arrivals: number[] = [];
  let t = 0;
  for (let i = 0; i < o.numRequests; i++) {
    const promptIds = [o.imageTokenId, ...Array.from({ length: around(o.inputLen) }, token)];
    requests.push({
      id: `bench-${i}`,
      promptIds,
      images: [pictures[i % numImages]],
      sampling: { maxTokens: around(o.outputLen), ignoreEos: true },
    });
    arrivals.push(t);
    t += gap(rng, o.requestRate);
  }
  return { requests, arrivals };
}

/**
 * Runs a workload on an engine in process: each request is sent at its arrival time (and, when
 * chained, once the request it follows has finished). `onResult` sees each result as it lands.
 * Aborting `signal` aborts the requests in flight and sends no more: the promise then rejects.
 */
export async function runWorkload(
  engine: Engine,
  w: Workload,
  onResult?: (r: GenerateResult, index: number) => void,
  signal?: AbortSignal,
): Promise<{ results: GenerateResult[]; durationS: number }> {
  const t0 = performance.now();
  const finished: Promise<GenerateResult>[] = [];
  const cancelled = () => new SwitchyardError('the run was cancelled', 'invalid_request');
  const stop = () => {
    for (const r of w.requests) if (r.id) engine.abort(r.id);
  };
  signal?.addEventListener('abort', stop, { once: true });
  const sleep = (ms: number) =>
    new Promise<void>((res) => {
      const timer = setTimeout(res, ms);
      const wake = () => {
        clearTimeout(timer);
        res();
      };
      signal?.addEventListener('abort', wake, { once: true });
    });
  try {
    w.requests.forEach((r, i) => {
      const before = w.after?.[i] ?? -1;
      finished.push(
        (async () => {
          if (before >= 0) await finished[before];
          const wait = t0 + w.arrivals[i] * 1000 - performance.now();
          if (wait > 0) await sleep(wait);
          if (signal?.aborted) throw cancelled();
          const [result] = await engine.generate([r]);
          onResult?.(result, i);
          return result;
        })(),
      );
    });
    const results = await Promise.all(finished);
    if (signal?.aborted) throw cancelled();
    return { results, durationS: (performance.now() - t0) / 1000 };
  } finally {
    signal?.removeEventListener('abort', stop);
  }
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
  'num-turns': { type: 'string', default: '4' },
  'num-images': { type: 'string', default: '4' },
  url: { type: 'string' },
} as const;

export async function runBench(
  args: string[],
  toEngineOptions: (v: Record<string, unknown>) => EngineOptions,
): Promise<number> {
  const values = parseFlags(args, BENCH_FLAGS);
  const workload = values.workload as WorkloadName;
  if (!WORKLOADS.includes(workload)) {
    throw new SwitchyardError(`--workload must be one of ${WORKLOADS.join(', ')}, got '${workload}'`);
  }
  const num = (name: string, min = 0): number => {
    const v = (values as unknown as Record<string, string>)[name];
    const n = v === 'inf' ? Number.POSITIVE_INFINITY : Number(v);
    if (Number.isNaN(n) || n < min)
      throw new SwitchyardError(`--${name} must be a number ≥ ${min}, got '${v}'`);
    return n;
  };
  const workloadOf = (vocabSize: number, imageTokenId?: number) =>
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
      numTurns: num('num-turns', 1),
      numImages: num('num-images', 1),
      imageTokenId,
    });
  const print = (report: object) =>
    process.stdout.write(
      values.json ? `${JSON.stringify(report)}\n` : `${JSON.stringify(report, null, 2)}\n`,
    );

  if (values.url) {
    // Over HTTP: the checkpoint only tells the vocabulary size, so both sides send the same ids.
    if (typeof values.model !== 'string')
      throw new SwitchyardError('--model DIR is required (its vocabulary seeds the prompts)');
    if (workload === 'images')
      throw new SwitchyardError(
        '--workload images runs in process only (the completions API takes no images); drop --url',
      );
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
    const w = workloadOf(engine.info.vocabSize, engine.spec.multimodal?.placeholderTokenId);
    const { results, durationS } = await runWorkload(engine, w);
    const stats = engine.stats();
    const report = {
      ...benchReport(results, durationS),
      prefix_hit_rate: stats.prefixHitRate,
      preemptions: stats.numPreemptions,
      kv_peak_usage: stats.kvPeakUsage,
      ...(engine.vision && {
        vision_runs: stats.visionRuns,
        vision_images: stats.visionImages,
        vision_tiles: stats.visionTiles,
        vision_max_batch_tiles: stats.visionMaxBatchTiles,
      }),
      config: { ...engine.info, policy: options.policy ?? 'fcfs', ...values, json: undefined },
    };
    print(report);
    return 0;
  } finally {
    await engine.close();
  }
}
