import type { AddressInfo } from 'node:net';
import type { Engine } from '@switchyard/core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_MODEL } from '../cli.js';
import { createEngine } from '../create-engine.js';
import { buildServer, type Server } from './app.js';

/**
 * Property-based fuzz of the request bodies of every POST route: whatever arrives, the answer is
 * never a 5xx, the process stays up, and every error is OpenAI's `{"error": {...}}` shape.
 */

const ENDPOINTS = [
  '/v1/chat/completions',
  '/v1/completions',
  '/generate',
  '/tokenize',
  '/detokenize',
] as const;
type Endpoint = (typeof ENDPOINTS)[number];

/** Bodies that would run generate at most this many tokens per completion, and this many completions. */
const MAX_RUN_TOKENS = 4;
const MAX_RUN_N = 2;
/** The demo model's context length and the engine's largest n: larger values are rejected, not run. */
const MAX_MODEL_LEN = 1024;
const MAX_N = 128;
const SEED = 42;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Path = (string | number)[];

const CHAT_TEXT: Json = [{ role: 'user', content: 'What does json.dumps do?' }];
const CHAT_PARTS: Json = [
  { role: 'system', content: 'Answer briefly.' },
  {
    role: 'user',
    content: [
      { type: 'text', text: 'What is in this picture?' },
      { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
      { type: 'image_url', image_url: 'https://example.com/cat.png' },
    ],
  },
];

/** Valid bodies (the image one is valid in shape; this text-only model answers it with a 400). */
const BASES: Record<Endpoint, Record<string, Json>[]> = {
  '/v1/chat/completions': [
    {
      model: 'switchyard-demo-text',
      messages: CHAT_TEXT,
      max_tokens: 3,
      temperature: 0,
      top_p: 1,
      top_k: -1,
      min_p: 0,
      n: 1,
      stop: ['\n\n'],
      seed: 7,
      logprobs: true,
      top_logprobs: 2,
      stream: false,
      stream_options: { include_usage: true },
      presence_penalty: 0,
      frequency_penalty: 0,
      repetition_penalty: 1,
      stop_token_ids: [4],
      ignore_eos: false,
    },
    {
      messages: CHAT_PARTS,
      max_completion_tokens: 2,
      temperature: 0.7,
      stream: true,
      stream_options: { include_usage: true },
    },
  ],
  '/v1/completions': [
    {
      model: 'switchyard-demo-text',
      prompt: 'Which module defines',
      max_tokens: 3,
      temperature: 0,
      top_p: 0.9,
      top_k: 20,
      n: 2,
      stop: 'xyz',
      seed: 1,
      logprobs: 1,
      echo: false,
      stream: false,
      ignore_eos: true,
    },
    { prompt: [0, 330, 87], max_tokens: 2, stream: true, stream_options: { include_usage: false } },
  ],
  '/generate': [
    {
      text: 'The os module',
      sampling_params: {
        max_new_tokens: 3,
        temperature: 0,
        top_p: 1,
        top_k: 5,
        min_p: 0.05,
        stop: ['?'],
        stop_token_ids: [4],
        ignore_eos: false,
        n: 1,
      },
      stream: false,
    },
    { input_ids: [0, 330, 87], sampling_params: { max_new_tokens: 2 }, stream: true, image_data: null },
  ],
  '/tokenize': [
    { prompt: 'What does json.dumps do?', add_special_tokens: true },
    { messages: CHAT_PARTS, add_special_tokens: false },
  ],
  '/detokenize': [{ tokens: [0, 330, 87, 4] }],
};

// Raw JSON text stands in for a value through a placeholder string, replaced after JSON.stringify.
interface Raw {
  raw: string;
}
/** Survives JSON.stringify unescaped (a control character would not). */
const RAW_MARK = '@@raw@@';
const raw = (text: string): Raw => ({ raw: text });
const isRaw = (v: unknown): v is Raw =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 1 && 'raw' in v;

const deepArrays = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);
const deepObjects = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
const deepMixed = (depth: number) => `${'[{"x":'.repeat(depth)}0${'}]'.repeat(depth)}`;

const LONG = 'a'.repeat(100_000);
const LONG_EMOJI = '🙂'.repeat(20_000);
const BAD_URLS = [
  'data:image/png;base64,!!!not base64!!!',
  'data:image/png;base64,',
  'data:image/png;base64,iVBORw0KGgo',
  'data:;base64,AAAA',
  'data:image/png,rawbytes',
  `data:image/png;base64,${'A'.repeat(50_000)}`,
  'data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=',
  'javascript:alert(1)',
  'ftp://example.com/cat.png',
  'http://127.0.0.1/cat.png',
  'http://localhost:1/cat.png',
  'http://[::1]/cat.png',
  'http://169.254.169.254/latest/meta-data/',
  'file:///etc/passwd',
  'gopher://127.0.0.1:25/',
  'not a url at all',
  '',
];

/** Fixed hard cases: wrong types, extremes, odd strings, huge structures. */
const EXTREMES: Json[] = [
  1e308,
  -1e308,
  2 ** 53,
  -(2 ** 53),
  2 ** 53 + 2,
  2 ** 31,
  -(2 ** 31) - 1,
  5e-324,
  -0,
  0,
  -1,
  1.5,
  100,
  129,
  'NaN',
  'Infinity',
  '-Infinity',
  '1e308',
  '4',
  '',
  ' ',
  '\u0000',
  '\ud800',
  'x\udfff',
  '\u202e\u200b',
  true,
  false,
  null,
  [],
  {},
  [null],
  [1.5],
  [-1],
  [2 ** 53],
  ['a', 1],
  { toString: 1 },
  { toString: 1, valueOf: 1 },
  { type: 'text' },
  { role: 'user' },
  { url: 'x' },
  LONG,
  LONG_EMOJI,
  Array.from({ length: 20_000 }, () => 1),
  Array.from({ length: 20 }, (_, i) => `stop${i}`),
];

/** Values spliced in as JSON text: deep nesting, numbers JSON.parse turns into Infinity, prototype keys. */
const RAWS: Raw[] = [
  raw(deepArrays(2000)),
  raw(deepObjects(2000)),
  raw(deepMixed(1000)),
  raw(deepArrays(100_000)),
  raw(deepObjects(20_000)),
  raw('1e999'),
  raw('-1e999'),
  raw('{"__proto__":{"polluted":1}}'),
  raw('{"constructor":{"prototype":{"polluted":1}}}'),
];

/** Values a field is replaced with: the fixed cases above, plus generated ones. */
const nasty: fc.Arbitrary<Json | Raw> = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json> },
  { weight: 4, arbitrary: fc.constantFrom(...EXTREMES) },
  { weight: 2, arbitrary: fc.constantFrom<Json>(...BAD_URLS) },
  { weight: 2, arbitrary: fc.constantFrom(...RAWS) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.integer() },
);

/** Every path into a value (object keys and array indexes), the root excluded. */
function paths(v: Json, prefix: Path = []): Path[] {
  if (Array.isArray(v)) return v.flatMap((x, i) => [[...prefix, i], ...paths(x, [...prefix, i])]);
  if (v !== null && typeof v === 'object')
    return Object.entries(v).flatMap(([k, x]) => [[...prefix, k], ...paths(x, [...prefix, k])]);
  return [];
}

/** The value at `path` in `v` (undefined where the path leads nowhere). */
const at = (v: Json, path: Path): Json | undefined =>
  path.reduce<Json | undefined>(
    (x, key) => (x !== null && typeof x === 'object' ? (x as Record<string | number, Json>)[key] : undefined),
    v,
  );

type Mutation = { path: Path; op: 'set'; value: Json | Raw } | { path: Path; op: 'delete' };

/** A deep copy of `base` with the mutations applied; raw values become placeholders. */
function mutate(base: Json, mutations: Mutation[], raws: string[]): Json {
  const body = structuredClone(base);
  for (const m of mutations) {
    let parent = body as Record<string | number, Json>;
    for (const key of m.path.slice(0, -1)) {
      const next = parent?.[key];
      if (next === null || typeof next !== 'object') return body;
      parent = next as Record<string | number, Json>;
    }
    const last = m.path[m.path.length - 1];
    if (m.op === 'delete') {
      if (Array.isArray(parent) && typeof last === 'number') parent.splice(last, 1);
      else delete parent[last];
    } else if (isRaw(m.value)) {
      raws.push(m.value.raw);
      parent[last] = `${RAW_MARK}${raws.length - 1}${RAW_MARK}`;
    } else parent[last] = m.value;
  }
  return body;
}

const isObject = (v: unknown): v is Record<string, Json> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Lowers a length or count the engine would accept (up to `accepted`) to `max`; values beyond what
 * the engine accepts stay, so their 400s are still tested.
 */
function capField(
  obj: Record<string, Json>,
  key: string,
  max: number,
  accepted: number,
  fillMissing: boolean,
) {
  const v = obj[key];
  if (v === undefined || v === null) {
    if (fillMissing) obj[key] = max;
  } else if (typeof v === 'number' && Number.isInteger(v) && v > max && v <= accepted) obj[key] = max;
}

/** Keeps bodies that would run short: at most MAX_RUN_TOKENS tokens times MAX_RUN_N completions. */
function capped(url: Endpoint, body: Json): Json {
  if (!isObject(body)) return body;
  const b = { ...body };
  if (url === '/v1/chat/completions') {
    const first = b.max_completion_tokens;
    capField(b, 'max_completion_tokens', MAX_RUN_TOKENS, MAX_MODEL_LEN, false);
    // max_tokens counts only when max_completion_tokens is missing.
    if (first === undefined || first === null) capField(b, 'max_tokens', MAX_RUN_TOKENS, MAX_MODEL_LEN, true);
    capField(b, 'n', MAX_RUN_N, MAX_N, false);
  } else if (url === '/v1/completions') {
    capField(b, 'max_tokens', MAX_RUN_TOKENS, MAX_MODEL_LEN, true);
    capField(b, 'n', MAX_RUN_N, MAX_N, false);
  } else if (url === '/generate') {
    if (b.sampling_params === undefined || b.sampling_params === null) b.sampling_params = {};
    if (isObject(b.sampling_params)) {
      const sp = { ...b.sampling_params };
      capField(sp, 'max_new_tokens', MAX_RUN_TOKENS, MAX_MODEL_LEN, true);
      capField(sp, 'n', MAX_RUN_N, MAX_N, false);
      b.sampling_params = sp;
    }
  }
  return b;
}

/** JSON text of a body, with raw placeholders replaced by their text. */
function toText(body: Json, raws: string[]): string {
  let spliced = 0;
  const text = JSON.stringify(body).replace(
    new RegExp(`"${RAW_MARK}(\\d+)${RAW_MARK}"`, 'g'),
    (_, i: string) => {
      spliced++;
      return raws[Number(i)];
    },
  );
  // A placeholder the body lost (an earlier mutation replaced its parent) is fine; a leftover is not.
  if (spliced > raws.length || text.includes(RAW_MARK)) throw new Error('raw placeholder left unspliced');
  return text;
}

interface Answer {
  status: number;
  contentType: string;
  body: string;
}

const stats = { requests: 0, byStatus: new Map<number, number>() };

describe('fuzzing the request bodies of the HTTP API', () => {
  let engine: Engine;
  let server: Server;
  let base: string;

  beforeAll(async () => {
    engine = await createEngine({ model: DEMO_MODEL, checkIntegrity: true });
    server = buildServer({ engine });
    await server.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = server.app.server.address() as AddressInfo;
    base = `http://127.0.0.1:${port}`;
  }, 60_000);

  afterAll(async () => {
    const summary = [...stats.byStatus].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`);
    console.log(`fuzz: ${stats.requests} requests; statuses ${summary.join(' ')}`);
    await server?.drain(1000);
  });

  /** Sends one body through fastify's in-process injection (no socket, same code path). */
  async function post(url: string, payload: string | Buffer, contentType?: string): Promise<Answer> {
    const res = await server.app.inject({
      method: 'POST',
      url,
      payload,
      headers: contentType === undefined ? {} : { 'content-type': contentType },
    });
    stats.requests++;
    stats.byStatus.set(res.statusCode, (stats.byStatus.get(res.statusCode) ?? 0) + 1);
    return { status: res.statusCode, contentType: String(res.headers['content-type'] ?? ''), body: res.body };
  }

  /** The property every answer keeps; throws (with the request) when it does not. */
  function check(answer: Answer, what: string) {
    const where = `${what} → ${answer.status} ${answer.body.slice(0, 300)}`;
    if (answer.status >= 500) throw new Error(`5xx: ${where}`);
    if (answer.status >= 200 && answer.status < 300) {
      if (answer.contentType.startsWith('text/event-stream')) {
        // A stream that started must not fail part way (that would be a 5xx in disguise).
        const events = answer.body.split('\n\n').filter(Boolean);
        if (events.at(-1) !== 'data: [DONE]') throw new Error(`stream without [DONE]: ${where}`);
        for (const e of events.slice(0, -1)) {
          if ('error' in JSON.parse(e.slice('data: '.length))) throw new Error(`error in stream: ${where}`);
        }
      } else JSON.parse(answer.body);
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(answer.body);
    } catch {
      throw new Error(`error body is not JSON: ${where}`);
    }
    const error = (parsed as { error?: Record<string, unknown> }).error;
    const ok =
      isObject(error) &&
      typeof error.message === 'string' &&
      error.message.length > 0 &&
      typeof error.type === 'string' &&
      'param' in error &&
      (error.param === null || typeof error.param === 'string') &&
      'code' in error &&
      (error.code === null || typeof error.code === 'string');
    if (!ok) throw new Error(`error body is not {"error": {message, type, param, code}}: ${where}`);
  }

  const describeBody = (url: string, text: string | Buffer, contentType?: string) =>
    `POST ${url} [${contentType ?? 'no content-type'}] ${String(text).slice(0, 200)}${text.length > 200 ? `… (${text.length} chars)` : ''}`;

  async function expectAlive() {
    const health = await server.app.inject({ method: 'GET', url: '/health' });
    expect(health.statusCode).toBe(200);
  }

  it('answers every unmutated base body with 200 (or the text model’s 400 for images)', async () => {
    expect(engine.info.maxModelLen).toBe(MAX_MODEL_LEN);
    for (const url of ENDPOINTS) {
      for (const body of BASES[url]) {
        const text = toText(capped(url, body), []);
        const answer = await post(url, text, 'application/json');
        check(answer, describeBody(url, text, 'application/json'));
        const hasImages = JSON.stringify(body).includes('image_url') && url !== '/tokenize';
        expect(answer.status, describeBody(url, text)).toBe(hasImages ? 400 : 200);
      }
    }
  }, 30_000);

  it('every fixed hard value in every field of every base body (a deterministic sweep)', async () => {
    const values: (Json | Raw)[] = [...EXTREMES, ...BAD_URLS, ...RAWS];
    // Huge values (long strings, deep nesting) cost milliseconds each: they replace top-level fields and
    // string leaves (roles, texts, URLs) only.
    const heavy = new Set(values.filter((v) => (isRaw(v) ? v.raw : JSON.stringify(v)).length > 10_000));
    let sent = 0;
    const started = Date.now();
    for (const url of ENDPOINTS) {
      for (const body of BASES[url]) {
        for (const path of [...paths(body), ['unknown_field']]) {
          for (const value of values) {
            if (heavy.has(value) && path.length > 1 && typeof at(body, path) !== 'string') continue;
            const raws: string[] = [];
            const text = toText(capped(url, mutate(body, [{ path, op: 'set', value }], raws)), raws);
            check(await post(url, text, 'application/json'), describeBody(url, text, 'application/json'));
            sent++;
          }
        }
      }
    }
    console.log(`sweep: ${sent} requests in ${Date.now() - started} ms`);
    await expectAlive();
  }, 90_000);

  it('arbitrary JSON values as bodies', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...ENDPOINTS), fc.jsonValue(), async (url, value) => {
        const text = toText(capped(url, value as Json), []);
        check(await post(url, text, 'application/json'), describeBody(url, text, 'application/json'));
      }),
      { numRuns: 80, seed: SEED },
    );
    await expectAlive();
  }, 60_000);

  it('valid bodies with fields replaced by wrong types, extremes, huge, deep and malicious values', async () => {
    const mutated = fc
      .constantFrom(...ENDPOINTS.flatMap((url) => BASES[url].map((body) => ({ url, body }))))
      .chain(({ url, body }) => {
        const fieldPaths = [...paths(body), ['unknown_field'], ['messages', 0, 'content', 5]];
        const mutation: fc.Arbitrary<Mutation> = fc.oneof(
          {
            weight: 5,
            arbitrary: fc.record({
              path: fc.constantFrom(...fieldPaths),
              op: fc.constant('set' as const),
              value: nasty,
            }),
          },
          {
            weight: 1,
            arbitrary: fc.record({
              path: fc.constantFrom(...fieldPaths),
              op: fc.constant('delete' as const),
            }),
          },
        );
        return fc.record({
          url: fc.constant(url),
          body: fc.constant(body),
          mutations: fc.array(mutation, { minLength: 1, maxLength: 3 }),
        });
      });
    await fc.assert(
      fc.asyncProperty(mutated, async ({ url, body, mutations }) => {
        const raws: string[] = [];
        const text = toText(capped(url, mutate(body, mutations, raws)), raws);
        check(await post(url, text, 'application/json'), describeBody(url, text, 'application/json'));
      }),
      { numRuns: 150, seed: SEED },
    );
    await expectAlive();
  }, 60_000);

  it('invalid JSON text, deep nesting, odd bytes and wrong content types', async () => {
    const validText = fc
      .constantFrom(...ENDPOINTS.flatMap((url) => BASES[url]))
      .map((b) => JSON.stringify(b));
    const payload: fc.Arbitrary<string | Buffer> = fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.string({ unit: 'binary', maxLength: 60 }),
      fc.tuple(validText, fc.nat()).map(([t, n]) => t.slice(0, n % t.length)),
      validText,
      fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
      fc.constantFrom(
        '',
        ' ',
        '{',
        '[',
        '}',
        'nul',
        'null',
        'NaN',
        'Infinity',
        '-',
        '1e999',
        '"a string"',
        '{"a":1,}',
        "{'prompt':'x'}",
        '{"prompt":"x"',
        '{"prompt":"x"}}',
        '{"prompt":"\\ud800"}',
        '{"prompt":"\\u00"}',
        '{"prompt":"x","prompt":1}',
        '{"__proto__":{"polluted":1},"prompt":"x"}',
        '{"prompt":"x","max_tokens":1e999}',
        '\ufeff{"prompt":"x","max_tokens":1}',
        deepArrays(2000),
        deepObjects(2000),
        deepMixed(1000),
        deepArrays(100_000),
        deepObjects(100_000),
        `{"messages":${deepArrays(2000)}}`,
        `{"prompt":${deepObjects(2000)}}`,
        `{"text":"x","sampling_params":${deepObjects(2000)}}`,
        `{"tokens":${deepArrays(2000)}}`,
        `{"model":${deepArrays(100_000)},"prompt":"x","max_tokens":1}`,
      ),
    );
    const contentType = fc.constantFrom(
      'application/json',
      'application/json',
      'application/json; charset=utf-8',
      'application/json; charset=latin1',
      'APPLICATION/JSON',
      'application/jsonx',
      'application/json, text/plain',
      'text/plain',
      'text/plain; charset=utf-8',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/octet-stream',
      'image/png',
      '*/*',
      ';;;',
      '',
      undefined,
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...ENDPOINTS), payload, contentType, async (url, text, type) => {
        check(await post(url, text, type), describeBody(url, text, type));
      }),
      { numRuns: 70, seed: SEED },
    );
    await expectAlive();
  }, 60_000);

  it('still serves a normal request over HTTP afterwards, with nothing left behind', async () => {
    const res = await fetch(`${base}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'What does', max_tokens: 4, temperature: 0 }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      choices: { text: string }[];
      usage: { completion_tokens: number };
    };
    // The same answer the engine gives directly: the fuzz left no state behind that changes outputs.
    const [direct] = await engine.generate([
      { prompt: 'What does', sampling: { maxTokens: 4, temperature: 0 } },
    ]);
    expect(body.choices[0].text).toBe(direct.outputs[0].text);
    expect(body.choices[0].text.length).toBeGreaterThan(0);
    expect(body.usage.completion_tokens).toBe(4);
    expect((await fetch(`${base}/health`)).status).toBe(200);
    expect(engine.numUnfinished()).toBe(0);
    expect(engine.stats().numRunning + engine.stats().numWaiting).toBe(0);
    expect(engine.stats().kvUsage).toBe(0);
    // The caps held: no request generated more than MAX_RUN_N × MAX_RUN_TOKENS tokens.
    const { numGenerationTokens, numRequestsFinished, numRequestsAborted } = engine.stats();
    expect(numGenerationTokens).toBeLessThanOrEqual(
      (numRequestsFinished + numRequestsAborted) * MAX_RUN_N * MAX_RUN_TOKENS,
    );
    expect(() => engine.kv.checkIntegrity()).not.toThrow();
  });
});
