import {
  decodeImage,
  type Engine,
  type EngineOptions,
  kvCacheRegistry,
  queuePolicies,
  Rng,
  SwitchyardError,
  schedulerRegistry,
} from '@switchyard/core';
import type { DependencyContainer } from 'tsyringe';
import { WORKLOADS, type WorkloadName, type WorkloadOptions } from '../../bench.js';
import { seededPicture } from '../../bench-images.js';
import { badRequest } from '../errors.js';

/** One engine configuration of a comparison run, as the page sends it (snake_case, all optional). */
export interface RunConfigBody {
  name?: string;
  scheduler?: string;
  attention?: string;
  policy?: string;
  max_num_batched_tokens?: number;
  block_size?: number;
  max_num_seqs?: number;
  kv_cache_tokens?: number;
  enable_prefix_caching?: boolean;
  enable_chunked_prefill?: boolean;
}

/** A comparison run: what each config's engine runs, checked and filled with defaults. */
export interface RunPlan {
  names: string[];
  /** Engine options per config: the served engine's, with the config's fields over them. */
  options: EngineOptions[];
  workload: WorkloadOptions;
  /** The request as normalized (defaults filled), echoed in the results and by "copy as JSON". */
  body: { configs: (RunConfigBody & { name: string })[]; workload: Record<string, unknown> };
}

/** Bounds that keep one run to seconds or minutes, not hours. */
export const RUN_LIMITS = { maxConfigs: 8, maxRequests: 1024, maxLen: 32768, maxTurns: 16, maxImages: 64 };

const WORKLOAD_DEFAULTS = {
  workload: 'shared-prefix',
  num_requests: 16,
  input_len: 32,
  output_len: 16,
  range_ratio: 0,
  shared_prefix_len: 64,
  num_prefixes: 2,
  request_rate: 'inf',
  seed: 0,
  num_turns: 4,
  num_images: 4,
} as const;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const snake = (camel: string) => camel.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * Checks a `POST /v1/playground/runs` body against the served engine and the container's
 * registries; throws a 400 naming the field (`configs[1].block_size`) for anything that cannot run.
 * Each config's KV manager and scheduler are built once here (no weights) so their own checks run.
 */
export function planRun(
  raw: unknown,
  engine: Engine,
  base: EngineOptions,
  container: DependencyContainer,
  pictureLen: number,
): RunPlan {
  if (!isObj(raw)) throw badRequest('the body must be a JSON object {configs: [...], workload: {...}}');
  const configs = raw.configs;
  if (!Array.isArray(configs) || configs.length < 1 || configs.length > RUN_LIMITS.maxConfigs)
    throw badRequest(
      `configs must be an array of 1 to ${RUN_LIMITS.maxConfigs} engine configurations`,
      'configs',
    );
  const wl = raw.workload ?? {};
  if (!isObj(wl)) throw badRequest('workload must be an object', 'workload');
  const workload = parseWorkload(wl, engine);
  const maxLen = longestRequest(workload, pictureLen);

  const names: string[] = [];
  const options: EngineOptions[] = [];
  const bodies: RunPlan['body']['configs'] = [];
  configs.forEach((c, i) => {
    const at = `configs[${i}]`;
    if (!isObj(c)) throw badRequest(`${at} must be an object`, at);
    const known = new Set([
      'name',
      'scheduler',
      'attention',
      'policy',
      'max_num_batched_tokens',
      'block_size',
      'max_num_seqs',
      'kv_cache_tokens',
      'enable_prefix_caching',
      'enable_chunked_prefill',
    ]);
    for (const k of Object.keys(c))
      if (!known.has(k))
        throw badRequest(`${at}.${k} is not a config field; known: ${[...known].join(', ')}`, `${at}.${k}`);
    const str = (k: string, list: string[], fallback: string): string => {
      const v = c[k] ?? fallback;
      if (typeof v !== 'string' || !list.includes(v))
        throw badRequest(
          `${at}.${k} must be one of ${list.join(', ')}, got ${JSON.stringify(v)}`,
          `${at}.${k}`,
        );
      return v;
    };
    const int = (k: string): number | undefined => {
      const v = c[k];
      if (v === undefined || v === null) return undefined;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 1 << 24)
        throw badRequest(`${at}.${k} must be a positive integer, got ${JSON.stringify(v)}`, `${at}.${k}`);
      return v;
    };
    const bool = (k: string): boolean | undefined => {
      const v = c[k];
      if (v === undefined || v === null) return undefined;
      if (typeof v !== 'boolean') throw badRequest(`${at}.${k} must be true or false`, `${at}.${k}`);
      return v;
    };
    const name = c.name ?? `config ${i + 1}`;
    if (typeof name !== 'string' || name.length > 80)
      throw badRequest(`${at}.name must be a string of at most 80 characters`, `${at}.name`);
    const o: EngineOptions = {
      ...base,
      scheduler: str('scheduler', schedulerRegistry(container).names(), base.scheduler ?? 'continuous'),
      attention: str('attention', kvCacheRegistry(container).names(), base.attention ?? 'paged'),
      policy: str('policy', queuePolicies.names(), base.policy ?? 'fcfs'),
      maxNumBatchedTokens: int('max_num_batched_tokens') ?? base.maxNumBatchedTokens,
      blockSize: int('block_size') ?? base.blockSize,
      maxNumSeqs: int('max_num_seqs') ?? base.maxNumSeqs,
      kvCacheTokens: int('kv_cache_tokens') ?? base.kvCacheTokens ?? engine.info.kvCacheTokens,
      enablePrefixCaching: bool('enable_prefix_caching') ?? base.enablePrefixCaching,
      enableChunkedPrefill: bool('enable_chunked_prefill') ?? base.enableChunkedPrefill,
    };
    // The served pool is the memory the operator gave the server; a run may not take more.
    const pool = Math.max(engine.info.kvCacheTokens, base.kvCacheTokens ?? 0);
    if (o.kvCacheTokens! > pool)
      throw badRequest(
        `${at}.kv_cache_tokens must be at most ${pool} (the served engine's pool); start the server with a larger --kv-cache-tokens to compare larger pools`,
        `${at}.kv_cache_tokens`,
      );
    if ((o.blockSize ?? 16) > Math.min(1024, o.kvCacheTokens!))
      throw badRequest(
        `${at}.block_size must be at most ${Math.min(1024, o.kvCacheTokens!)} (1024, and no more than the pool's tokens)`,
        `${at}.block_size`,
      );
    checkConfig(o, engine, container, at, maxLen);
    names.push(name);
    options.push(o);
    bodies.push({
      name,
      scheduler: o.scheduler,
      attention: o.attention,
      policy: o.policy,
      max_num_batched_tokens: o.maxNumBatchedTokens,
      block_size: o.blockSize ?? 16,
      max_num_seqs: o.maxNumSeqs ?? 64,
      kv_cache_tokens: o.kvCacheTokens,
      enable_prefix_caching: o.enablePrefixCaching ?? true,
      enable_chunked_prefill: o.enableChunkedPrefill ?? true,
    });
  });
  const wlBody: Obj = {
    workload: workload.workload,
    num_requests: workload.numRequests,
    input_len: workload.inputLen,
    output_len: workload.outputLen,
    range_ratio: workload.rangeRatio,
    shared_prefix_len: workload.sharedPrefixLen,
    num_prefixes: workload.numPrefixes,
    request_rate: Number.isFinite(workload.requestRate) ? workload.requestRate : 'inf',
    seed: workload.seed,
    num_turns: workload.numTurns,
    num_images: workload.numImages,
  };
  return { names, options, workload, body: { configs: bodies, workload: wlBody } };
}

function parseWorkload(wl: Obj, engine: Engine): WorkloadOptions {
  const v = { ...WORKLOAD_DEFAULTS, ...wl } as Obj;
  for (const k of Object.keys(wl))
    if (!(k in WORKLOAD_DEFAULTS))
      throw badRequest(
        `workload.${k} is not a workload field; known: ${Object.keys(WORKLOAD_DEFAULTS).join(', ')}`,
        `workload.${k}`,
      );
  const name = v.workload as WorkloadName;
  if (!WORKLOADS.includes(name))
    throw badRequest(
      `workload.workload must be one of ${WORKLOADS.join(', ')}, got ${JSON.stringify(name)}`,
      'workload.workload',
    );
  if (name === 'images' && !engine.spec.multimodal)
    throw badRequest(
      `the images workload needs a vision-language model; ${engine.info.architecture} takes no images`,
      'workload.workload',
    );
  const num = (k: string, min: number, max: number, integer = true): number => {
    const x = v[k];
    if (
      typeof x !== 'number' ||
      !Number.isFinite(x) ||
      x < min ||
      x > max ||
      (integer && !Number.isInteger(x))
    )
      throw badRequest(
        `workload.${k} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${JSON.stringify(x)}`,
        `workload.${k}`,
      );
    return x;
  };
  const rate = v.request_rate;
  let requestRate: number;
  if (rate === 'inf' || rate === null) requestRate = Number.POSITIVE_INFINITY;
  else requestRate = num('request_rate', 0.001, 1e6, false);
  return {
    workload: name,
    numRequests: num('num_requests', 1, RUN_LIMITS.maxRequests),
    inputLen: num('input_len', 1, RUN_LIMITS.maxLen),
    outputLen: num('output_len', 1, RUN_LIMITS.maxLen),
    rangeRatio: num('range_ratio', 0, 0.99, false),
    sharedPrefixLen: num('shared_prefix_len', 0, RUN_LIMITS.maxLen),
    numPrefixes: num('num_prefixes', 1, 1024),
    requestRate,
    seed: num('seed', 0, Number.MAX_SAFE_INTEGER),
    vocabSize: engine.info.vocabSize,
    numTurns: num('num_turns', 1, RUN_LIMITS.maxTurns),
    numImages: num('num_images', 1, RUN_LIMITS.maxImages),
    imageTokenId: engine.spec.multimodal?.placeholderTokenId,
  };
}

/** The most tokens (prompt + output) one request of the workload can need. */
function longestRequest(w: WorkloadOptions, pictureLen: number): number {
  const hi = (n: number) => Math.max(1, Math.round(n * (1 + w.rangeRatio)));
  const turn = hi(w.inputLen) + hi(w.outputLen);
  switch (w.workload) {
    case 'shared-prefix':
      return w.sharedPrefixLen + turn;
    case 'multi-turn':
      return (w.numTurns ?? 4) * turn;
    case 'images':
      return turn + pictureLen;
    default:
      return turn;
  }
}

/** Prompt tokens one seeded picture of the images workload takes, its placeholder expanded. */
export async function pictureTokens(engine: Engine): Promise<number> {
  const mm = engine.spec.multimodal;
  if (!mm) return 0;
  const processed = mm.process(await decodeImage(seededPicture(new Rng(0))));
  return mm.expand(processed).ids.length;
}

/**
 * What `Engine.create` would refuse, found without loading weights: the pool, context and chunked
 * prefill arithmetic, then the config's KV manager and scheduler built for real and dropped.
 */
function checkConfig(
  o: EngineOptions,
  engine: Engine,
  container: DependencyContainer,
  at: string,
  maxLen: number,
) {
  const blockSize = o.blockSize ?? 16;
  const numBlocks = Math.max(1, Math.floor(o.kvCacheTokens! / blockSize));
  const maxPos = engine.spec.decoder.maxPositionEmbeddings;
  const maxModelLen = Math.min(o.maxModelLen ?? maxPos, maxPos, numBlocks * blockSize);
  const budget = o.maxNumBatchedTokens ?? Math.max(2048, o.enableChunkedPrefill === false ? maxModelLen : 0);
  if (o.enableChunkedPrefill === false && budget < maxModelLen)
    throw badRequest(
      `${at}.max_num_batched_tokens: with chunked prefill off the token budget (${budget}) must be at least the context length (${maxModelLen}); raise it or turn chunked prefill on`,
      `${at}.max_num_batched_tokens`,
    );
  if (maxLen > maxModelLen)
    throw badRequest(
      `${at}.kv_cache_tokens: the workload's longest request needs ${maxLen} tokens but this config's context holds ${maxModelLen} (the model's ${maxPos} positions, the pool's ${numBlocks * blockSize} tokens); shorten the workload or enlarge the pool`,
      `${at}.kv_cache_tokens`,
    );
  try {
    const kv = kvCacheRegistry(container).get(o.attention!)({
      blockSize,
      numBlocks,
      enablePrefixCaching: o.enablePrefixCaching ?? true,
    });
    schedulerRegistry(container).get(o.scheduler!)(
      {
        maxNumSeqs: o.maxNumSeqs ?? 64,
        maxNumBatchedTokens: budget,
        maxModelLen,
        enableChunkedPrefill: o.enableChunkedPrefill ?? true,
        policy: o.policy ?? 'fcfs',
      },
      kv,
    );
  } catch (e) {
    if (!(e instanceof SwitchyardError)) throw e;
    const param = `${at}.${e.param ? snake(e.param).replace('num_blocks', 'kv_cache_tokens') : 'scheduler'}`;
    throw badRequest(`${param}: ${e.message}`, param);
  }
}
