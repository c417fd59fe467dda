#!/usr/bin/env node
// Guided decoding on the CPU: a JSON-schema workload with and without jump-forward, and the
// per-step cost of the grammar mask at a 150k vocabulary. Prints one JSON object.
//   npm run build && node scripts/bench-guided.mjs [--model models/switchyard-demo-text] [--requests 8]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { applyBitmask, GuidedDecoding, tokenizerVocab } from '../packages/core/dist/sampling/guided/index.js';
import { createEngine } from '../packages/server/dist/index.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/switchyard-demo-text' },
    requests: { type: 'string', default: '8' },
    'mask-steps': { type: 'string', default: '400' },
    'skip-mask': { type: 'boolean', default: false },
  },
});

const SCHEMA = {
  type: 'object',
  properties: {
    function: { type: 'string', maxLength: 24 },
    module: { enum: ['json', 'os', 'collections', 'itertools', 'functools', 'pathlib'] },
    arguments: {
      type: 'array',
      items: {
        type: 'object',
        properties: { name: { type: 'string', maxLength: 12 }, required: { type: 'boolean' } },
        required: ['name', 'required'],
      },
      maxItems: 3,
    },
    returns_value: { type: 'boolean' },
    since_version: { enum: ['2.7', '3.0', '3.5', '3.8', '3.12'] },
  },
  required: ['function', 'module', 'arguments', 'returns_value', 'since_version'],
};
const QUESTIONS = [
  'json.dumps',
  'os.path.join',
  'collections.deque',
  'itertools.chain',
  'functools.partial',
  'pathlib.Path',
  'json.loads',
  'os.listdir',
];

async function workload(engine, jumpForward) {
  const n = Number(values.requests);
  const reqs = Array.from({ length: n }, (_, i) => ({
    messages: [{ role: 'user', content: `Describe ${QUESTIONS[i % QUESTIONS.length]} as JSON.` }],
    sampling: { maxTokens: 160, guided: { type: 'json_schema', schema: SCHEMA }, jumpForward },
  }));
  // Warm: compiles the grammar (cached afterwards) and the ORT session.
  await engine.generate([reqs[0]]);
  const steps0 = engine.metrics.numSteps;
  const t0 = performance.now();
  const results = [];
  for (const r of reqs) results.push(...(await engine.generate([r]))); // one at a time: latency
  const ms = performance.now() - t0;
  const tokens = results.reduce((a, r) => a + r.outputs[0].tokenIds.length, 0);
  const valid = results.filter((r) => {
    try {
      JSON.parse(r.outputs[0].text);
      return true;
    } catch {
      return false;
    }
  }).length;
  return {
    jumpForward,
    requests: n,
    outputTokens: tokens,
    engineSteps: engine.metrics.numSteps - steps0,
    wallMs: Math.round(ms),
    msPerRequest: Math.round(ms / n),
    outputTokensPerS: Math.round((tokens / ms) * 1000),
    validJson: valid,
    sample: results[0].outputs[0].text,
  };
}

/** A 150k byte-level vocabulary: the demo tokenizer's 3,072 tokens plus concatenations of them. */
function syntheticVocab(size) {
  const tj = JSON.parse(readFileSync(join('models/switchyard-demo-text', 'tokenizer.json'), 'utf8'));
  const base = Object.keys(tj.model.vocab).filter((s) => s.length > 0);
  const seen = new Set(base);
  const vocab = { ...tj.model.vocab };
  let id = Math.max(...Object.values(vocab)) + 1;
  let x = 12345;
  const rand = (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  while (id < size - 1) {
    const parts = 2 + rand(2);
    let s = '';
    for (let i = 0; i < parts; i++) s += base[rand(base.length)];
    if (s.length > 16 || seen.has(s)) continue;
    seen.add(s);
    vocab[s] = id++;
  }
  return tokenizerVocab(
    {
      model: { vocab },
      added_tokens: [{ id: size - 1, content: '<|eot|>', special: true }],
      decoder: { type: 'ByteLevel' },
    },
    size,
    [size - 1],
    'synthetic-150k',
  );
}

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function maskCost(schema, vocab) {
  const V = vocab.vocabSize;
  let t = performance.now();
  const g = await GuidedDecoding.create(vocab);
  const infoMs = performance.now() - t;
  t = performance.now();
  const compiled = await g.compile({ type: 'json_schema', schema });
  const firstCompileMs = performance.now() - t;
  t = performance.now();
  await g.compile({ type: 'json_schema', schema });
  const cachedMs = performance.now() - t;
  const logits = new Float32Array(V);
  const mask = [];
  const apply = [];
  let x = 7;
  let walked = 0;
  for (let run = 0; walked < Number(values['mask-steps']) && run < 100; run++) {
    const m = await g.matcher(compiled, [V - 1]);
    while (!m.isTerminated && walked < Number(values['mask-steps'])) {
      const t0 = performance.now();
      const bits = await m.bitmask();
      const t1 = performance.now();
      logits.fill(0);
      applyBitmask(logits, bits);
      const t2 = performance.now();
      mask.push((t1 - t0) * 1000);
      apply.push((t2 - t1) * 1000);
      const allowed = [];
      for (let i = 0; i < V; i++) if (logits[i] === 0) allowed.push(i);
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      m.accept(allowed[x % allowed.length]);
      walked++;
    }
    m.dispose();
  }
  await g.close();
  return {
    vocabSize: V,
    tokenizerInfoAndCompilerMs: Math.round(infoMs),
    firstCompileMs: Math.round(firstCompileMs),
    trialCompileInWorkerMs: Math.round(g.stats.lastTrialMs),
    compileOnEngineThreadMs: Math.round(g.stats.lastCompileMs),
    cachedCompileMs: Number(cachedMs.toFixed(3)),
    steps: mask.length,
    maskUs: {
      p50: Math.round(pct(mask, 50)),
      p99: Math.round(pct(mask, 99)),
      max: Math.round(Math.max(...mask)),
    },
    applyToLogitsUs: { p50: Math.round(pct(apply, 50)), p99: Math.round(pct(apply, 99)) },
  };
}

const vocab150k = syntheticVocab(151_936);
const engine = await createEngine({ model: values.model });
const off = await workload(engine, false);
const on = await workload(engine, true);
await engine.close();
const out = {
  machine: `${(await import('node:os')).cpus()[0].model} × ${(await import('node:os')).cpus().length}`,
  model: values.model,
  vocab150k:
    'synthetic byte-level: the demo tokenizer + concatenations of its tokens (no 150k tokenizer on this machine)',
  jsonSchema: {
    off,
    on,
    speedup: Number((off.wallMs / on.wallMs).toFixed(2)),
    stepRatio: Number((off.engineSteps / on.engineSteps).toFixed(2)),
  },
  maskAt150k: values['skip-mask']
    ? undefined
    : {
        // The same schema without maxLength (bounded strings expand into one grammar state per character).
        unboundedStrings: await maskCost(
          JSON.parse(JSON.stringify(SCHEMA).replaceAll(/"maxLength":\d+/g, '"minLength":0')),
          vocab150k,
        ),
        maxLengthStrings: await maskCost(SCHEMA, vocab150k),
      },
};
console.log(JSON.stringify(out, null, 2));
