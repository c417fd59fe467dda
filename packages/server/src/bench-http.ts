import { SwitchyardError } from '@switchyard/core';
import { summarize, type Workload } from './bench.js';

/** One replayed request as the client saw it; latencies are wall-clock ms on this side of the wire. */
export interface HttpResult {
  /** Request sent to first token chunk. */
  ttftMs: number;
  /** Gaps between successive token chunks. */
  itlMs: number[];
  /** Request sent to the end of the stream. */
  e2eMs: number;
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens the server reported as served from its prefix cache. */
  cachedTokens: number;
  /** Why the request failed: an HTTP status, an error object in the stream, a network error. */
  error?: string;
}

export interface HttpBenchOptions {
  /** Model id to send; defaults to the first id of GET /v1/models. */
  model?: string;
  /** Sent as `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** At most this many requests in flight; later arrivals wait for a slot. Default: no limit. */
  maxConcurrency?: number;
}

const base = (url: string) => url.replace(/\/+$/, '');

function headers(apiKey: string | undefined): Record<string, string> {
  const h: Record<string, string> = { 'content-type': 'application/json' };
  if (apiKey) h.authorization = `Bearer ${apiKey}`;
  return h;
}

/** The first model id the server lists. */
async function firstModel(url: string, apiKey: string | undefined): Promise<string> {
  let res: Response;
  try {
    res = await fetch(`${base(url)}/v1/models`, { headers: headers(apiKey) });
  } catch (e) {
    throw new SwitchyardError(`cannot reach ${base(url)}/v1/models: ${errorText(e)}`);
  }
  if (!res.ok) throw new SwitchyardError(`GET ${base(url)}/v1/models answered ${res.status}`);
  const body = (await res.json()) as { data?: { id?: unknown }[] };
  const id = body.data?.[0]?.id;
  if (typeof id !== 'string') throw new SwitchyardError(`${base(url)}/v1/models lists no model`);
  return id;
}

function errorText(e: unknown): string {
  if (e instanceof Error) {
    const cause = (e as { cause?: unknown }).cause;
    return cause instanceof Error ? `${e.message}: ${cause.message}` : e.message;
  }
  return String(e);
}

/** The message of an OpenAI-style error body (`{error: {message}}`), or the raw text. */
function errorMessage(payload: unknown, raw: string): string {
  const err = (payload as { error?: unknown } | null)?.error;
  if (typeof err === 'string') return err;
  const msg = (err as { message?: unknown } | undefined)?.message;
  if (typeof msg === 'string') return msg;
  return raw.slice(0, 200);
}

interface Chunk {
  choices?: { text?: unknown; token_ids?: unknown }[];
  usage?: {
    prompt_tokens?: number;
    completion_tokens?: number;
    prompt_tokens_details?: { cached_tokens?: number } | null;
  } | null;
  error?: unknown;
}

/** A chunk carries a token when its first choice has text (or, for servers that send them, token ids). */
function carriesToken(c: Chunk): boolean {
  const choice = c.choices?.[0];
  if (!choice) return false;
  if (typeof choice.text === 'string' && choice.text.length > 0) return true;
  return Array.isArray(choice.token_ids) && choice.token_ids.length > 0;
}

/** Sends one streamed completion and times its token chunks. */
async function sendOne(
  url: string,
  body: Record<string, unknown>,
  apiKey: string | undefined,
  promptLen: number,
): Promise<HttpResult> {
  const tokenTimes: number[] = [];
  let usage: Chunk['usage'];
  let error: string | undefined;
  let done = false;
  const start = performance.now();
  const controller = new AbortController();
  try {
    const res = await fetch(`${base(url)}/v1/completions`, {
      method: 'POST',
      headers: headers(apiKey),
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!res.ok || !res.body) {
      const raw = await res.text().catch(() => '');
      let payload: unknown;
      try {
        payload = JSON.parse(raw);
      } catch {}
      error = `HTTP ${res.status}: ${errorMessage(payload, raw)}`;
    } else {
      const decoder = new TextDecoder();
      let buf = '';
      let data: string[] = [];
      // Dispatches one SSE event (its data lines joined); returns false once the stream is over.
      const dispatch = (now: number): boolean => {
        if (data.length === 0) return true;
        const text = data.join('\n');
        data = [];
        if (text.trim() === '[DONE]') {
          done = true;
          return false;
        }
        let chunk: Chunk;
        try {
          chunk = JSON.parse(text) as Chunk;
        } catch {
          error = `malformed stream data: ${text.slice(0, 200)}`;
          return false;
        }
        if (chunk.error !== undefined && chunk.error !== null) {
          error = errorMessage(chunk, text);
          return false;
        }
        if (carriesToken(chunk)) tokenTimes.push(now);
        if (chunk.usage) usage = chunk.usage;
        return true;
      };
      const reader = res.body.getReader();
      let going = true;
      while (going) {
        const { value, done: eof } = await reader.read();
        const now = performance.now();
        buf += eof ? decoder.decode() : decoder.decode(value, { stream: true });
        let nl = buf.indexOf('\n');
        while (going && nl >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, '');
          buf = buf.slice(nl + 1);
          if (line === '') going = dispatch(now);
          else if (line.startsWith('data:')) data.push(line.slice(line[5] === ' ' ? 6 : 5));
          // Comments (':'), event:, id: and retry: lines carry nothing to time.
          nl = buf.indexOf('\n');
        }
        if (eof) {
          if (going && buf.startsWith('data:')) data.push(buf.slice(buf[5] === ' ' ? 6 : 5));
          if (going) dispatch(now);
          break;
        }
      }
      if (!done || error !== undefined) await reader.cancel().catch(() => {});
      if (!done && error === undefined) error = 'stream ended without data: [DONE]';
    }
  } catch (e) {
    error = errorText(e);
    controller.abort();
  }
  const end = performance.now();
  const itlMs = tokenTimes.slice(1).map((t, i) => t - tokenTimes[i]);
  const result: HttpResult = {
    ttftMs: tokenTimes.length > 0 ? tokenTimes[0] - start : end - start,
    itlMs,
    e2eMs: end - start,
    // Without a usage chunk, fall back to what the client can count itself.
    promptTokens: usage?.prompt_tokens ?? promptLen,
    completionTokens: usage?.completion_tokens ?? tokenTimes.length,
    cachedTokens: usage?.prompt_tokens_details?.cached_tokens ?? 0,
  };
  if (error !== undefined) result.error = error;
  return result;
}

/** Bounds the number of requests in flight. */
function limiter(max: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async (fn) => {
    if (active >= max) await new Promise<void>((res) => waiting.push(res));
    else active++;
    try {
      return await fn();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else active--;
    }
  };
}

/**
 * Replays a workload against a running OpenAI-compatible server: each request is POSTed to
 * `/v1/completions` (token-id prompt, streamed, greedy, EOS ignored) at its arrival time, and its
 * token chunks are timed as they come. Failed requests are returned with `error` set, never thrown.
 */
export async function runHttpBench(
  url: string,
  workload: Workload,
  opts: HttpBenchOptions = {},
): Promise<{ results: HttpResult[]; durationS: number }> {
  const max = opts.maxConcurrency ?? Number.POSITIVE_INFINITY;
  if (!(max >= 1)) throw new SwitchyardError(`maxConcurrency must be at least 1, got ${max}`);
  const bodies = workload.requests.map((r, i) => {
    if (r.images?.length)
      throw new SwitchyardError(`request ${r.id ?? i} has images; the completions API takes none`);
    const prompt = r.promptIds ?? r.prompt;
    if (prompt === undefined) {
      throw new SwitchyardError(`request ${r.id ?? i} has no prompt or promptIds to send over HTTP`);
    }
    return {
      prompt,
      promptLen: r.promptIds?.length ?? 0,
      max_tokens: r.sampling?.maxTokens,
    };
  });
  const model = opts.model ?? (await firstModel(url, opts.apiKey));
  const limit = limiter(max);
  const t0 = performance.now();
  const sent: Promise<HttpResult>[] = [];
  bodies.forEach((b, i) => {
    sent.push(
      (async () => {
        // A chained request (multi-turn) waits for the one it follows.
        const before = workload.after?.[i] ?? -1;
        if (before >= 0) await sent[before];
        const wait = t0 + workload.arrivals[i] * 1000 - performance.now();
        if (wait > 0) await new Promise((res) => setTimeout(res, wait));
        const body = {
          model,
          prompt: b.prompt,
          max_tokens: b.max_tokens,
          ignore_eos: true,
          stream: true,
          stream_options: { include_usage: true },
          temperature: 0,
        };
        return limit(() => sendOne(url, body, opts.apiKey, b.promptLen));
      })(),
    );
  });
  const results = await Promise.all(sent);
  return { results, durationS: (performance.now() - t0) / 1000 };
}

export type HttpBenchReport = ReturnType<typeof httpBenchReport>;

/**
 * The figures of `switchyard bench --url … --json`: `benchReport`'s fields over the requests that
 * succeeded (`requests` counts those), plus `failed` and the server-reported `prefix_hit_rate`.
 */
export function httpBenchReport(results: HttpResult[], durationS: number) {
  const ok = results.filter((r) => r.error === undefined);
  const out = ok.reduce((a, r) => a + r.completionTokens, 0);
  const inp = ok.reduce((a, r) => a + r.promptTokens, 0);
  const cached = ok.reduce((a, r) => a + r.cachedTokens, 0);
  const tpot = ok
    .filter((r) => r.completionTokens > 1)
    .map((r) => (r.e2eMs - r.ttftMs) / (r.completionTokens - 1));
  return {
    requests: ok.length,
    duration_s: durationS,
    output_tok_s: durationS > 0 ? out / durationS : 0,
    total_tok_s: durationS > 0 ? (out + inp) / durationS : 0,
    ttft_ms: summarize(ok.map((r) => r.ttftMs)),
    tpot_ms: summarize(tpot),
    itl_ms: summarize(ok.flatMap((r) => r.itlMs)),
    failed: results.length - ok.length,
    prefix_hit_rate: inp > 0 ? cached / inp : 0,
  };
}
