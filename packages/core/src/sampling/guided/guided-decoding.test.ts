import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SwitchyardError } from '../../errors.js';
import { Checkpoint } from '../../loader/checkpoint.js';
import type { GuidedSpec } from '../../sampling-params.js';
import { fixture, fixtureTitle } from '../../testing/fixtures.js';
import { GuidedDecoding } from './guided-decoding.js';
import { applyBitmask, type GuidedMatcher, isAllowed } from './guided-matcher.js';
import { readTokenizerVocab, tokenizerVocab } from './tokenizer-vocab.js';

describe('tokenizerVocab', () => {
  it('keeps raw byte-level strings, blanks special tokens, keeps <0xNN> byte tokens of byte fallback', () => {
    const v = tokenizerVocab(
      {
        model: { vocab: { a: 3, Ġb: 4, '<0x0A>': 5 } },
        added_tokens: [
          { id: 0, content: '<|im_start|>', special: true },
          { id: 1, content: '<tool_call>', special: false },
        ],
        decoder: { type: 'ByteLevel' },
      },
      8,
      [0, 99],
    );
    expect(v.vocabType).toBe('byte_level');
    expect(v.encodedVocab).toEqual(['', '<tool_call>', '', 'a', 'Ġb', '<0x0A>', '', '']);
    expect(v.stopIds).toEqual([0]);
    const bf = tokenizerVocab(
      {
        model: { vocab: { '▁a': 2 } },
        added_tokens: [
          { id: 0, content: '<unk>', special: true },
          { id: 1, content: '<0x0A>', special: true },
        ],
        decoder: { type: 'Sequence', decoders: [{ type: 'Replace' }, { type: 'ByteFallback' }] },
        normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }] },
      },
      3,
      [],
    );
    expect(bf.vocabType).toBe('byte_fallback');
    expect(bf.prependSpace).toBe(true);
    expect(bf.encodedVocab).toEqual(['', '<0x0A>', '▁a']);
  });
});

describe('applyBitmask', () => {
  it('keeps allowed ids, sets the rest to -Infinity, ignores padding bits', () => {
    const logits = new Float32Array(40).fill(1);
    const mask = new Int32Array([0b101, -1]);
    applyBitmask(logits, mask);
    expect([...logits.slice(0, 4)]).toEqual([1, -Infinity, 1, -Infinity]);
    expect(logits[33]).toBe(1);
    expect(isAllowed(mask, 2)).toBe(true);
    expect(isAllowed(mask, 1)).toBe(false);
  });
});

const fx = fixture('qwen2-tiny');
describe.skipIf(fx.missing)(fixtureTitle(fx, 'GuidedDecoding on qwen2-tiny'), () => {
  let ckpt: Checkpoint;
  let guided: GuidedDecoding;
  beforeAll(async () => {
    ckpt = Checkpoint.open(fx.dir);
    const V = ckpt.config.vocab_size as number;
    guided = await GuidedDecoding.create(readTokenizerVocab(fx.dir, V, ckpt.eosTokenIds), {
      compileTimeoutMs: 5000,
    });
  });
  afterAll(() => guided?.close());

  /** Follows the grammar by always taking the allowed token with the smallest id (EOS last). */
  async function walk(m: GuidedMatcher, maxSteps = 200): Promise<number[]> {
    const out: number[] = [];
    const eos = ckpt.eosTokenIds;
    for (let i = 0; i < maxSteps && !m.isTerminated; i++) {
      const mask = await m.bitmask();
      const allowed: number[] = [];
      for (let t = 0; t < m.vocabSize; t++) if (isAllowed(mask, t)) allowed.push(t);
      expect(allowed.length).toBeGreaterThan(0);
      const t = allowed.find((x) => !eos.includes(x)) ?? allowed[0];
      expect(m.accept(t)).toBe(true);
      out.push(t);
    }
    return out;
  }

  it('a JSON schema: the walk decodes to a matching object, special tokens never allowed inside', async () => {
    const spec: GuidedSpec = {
      type: 'json_schema',
      schema: {
        type: 'object',
        properties: {
          name: { type: 'string', maxLength: 3 },
          age: { type: 'integer', minimum: 0, maximum: 120 },
        },
        required: ['name', 'age'],
      },
    };
    const m = await guided.matcher(await guided.compile(spec), ckpt.eosTokenIds);
    const mask = await m.bitmask();
    // <|im_start|> (1) and <|im_end|> (2, not EOS here) never fit in JSON.
    expect(isAllowed(mask, 1)).toBe(false);
    const ids = await walk(m);
    const text = ckpt.tokenizer.decode(ids.filter((t) => !ckpt.eosTokenIds.includes(t)));
    const obj = JSON.parse(text);
    expect(Object.keys(obj)).toEqual(['name', 'age']);
    expect(m.isTerminated).toBe(true);
    m.dispose();
  });

  it('jump-forward: after "may" in (yes|no|maybe) the grammar forces "be"', async () => {
    const m = await guided.matcher(
      await guided.compile({ type: 'choice', choices: ['yes', 'no', 'maybe'] }),
      ckpt.eosTokenIds,
    );
    for (const t of ckpt.tokenizer.encode('may')) expect(m.accept(t)).toBe(true);
    expect(m.jumpForwardString()).toBe('be');
    m.dispose();
  });

  it('a regex and a choice list are always matched', async () => {
    for (const spec of [
      { type: 'regex', pattern: '[0-9]{3}-[a-z]{2}' },
      { type: 'choice', choices: ['red', 'green', 'blue "quoted"', 'ünï'] },
    ] as GuidedSpec[]) {
      const m = await guided.matcher(await guided.compile(spec), ckpt.eosTokenIds);
      const text = ckpt.tokenizer.decode((await walk(m)).filter((t) => !ckpt.eosTokenIds.includes(t)));
      if (spec.type === 'regex') expect(text).toMatch(/^[0-9]{3}-[a-z]{2}$/);
      else expect(spec.type === 'choice' && spec.choices).toContain(text);
      m.dispose();
    }
  });

  it.each([
    [{ type: 'grammar', grammar: 'root ::= "a" |', param: 'guided_grammar' }, /EBNF parser error/],
    [{ type: 'json_schema', schema: { type: 12 }, param: 'response_format' }, /Type should be a string/],
    [{ type: 'regex', pattern: '(?=a)b', param: 'guided_regex' }, /regular expression/],
  ] as [GuidedSpec, RegExp][])(
    'a bad %j is a 400 naming the reason, and the engine instance survives',
    async (spec, reason) => {
      const err = await guided.compile(spec).catch((e) => e);
      expect(err).toBeInstanceOf(SwitchyardError);
      expect(err.kind).toBe('invalid_request');
      expect(err.param).toBe(spec.param);
      expect(err.message).toMatch(reason);
      // The next grammar still compiles (the worker was restarted; this thread never saw the abort).
      await expect(guided.compile({ type: 'regex', pattern: 'ok' })).resolves.toBeDefined();
    },
  );

  it('caches compiled grammars by spec', async () => {
    const spec: GuidedSpec = { type: 'regex', pattern: '[a-c]+' };
    const a = await guided.compile(spec);
    const hits = guided.stats.cacheHits;
    expect(await guided.compile({ ...spec, param: 'other' })).toBe(a);
    expect(guided.stats.cacheHits).toBe(hits + 1);
  });

  it('a compile over the time limit is refused', async () => {
    const slow = await GuidedDecoding.create(guided.vocab, { compileTimeoutMs: 1 });
    const err = await slow
      .compile({ type: 'json_schema', schema: { type: 'string', maxLength: 50 } })
      .catch((e) => e);
    expect(err.message).toMatch(/takes longer than 1 ms/);
    await slow.close();
  });
});

describe.skipIf(fx.missing)(fixtureTitle(fx, 'tool-call grammar (qwen2-tiny vocabulary)'), () => {
  it('a JSON schema between fixed tags: compact JSON, the tags forced', async () => {
    const ckpt = Checkpoint.open(fx.dir);
    const g = await GuidedDecoding.create(readTokenizerVocab(fx.dir, 2000, ckpt.eosTokenIds));
    const schema = {
      type: 'object',
      properties: {
        name: { const: 'get_weather' },
        arguments: { type: 'object', properties: { root: { enum: ['x"y', 'z'] } }, required: ['root'] },
      },
      required: ['name', 'arguments'],
    };
    const m = await g.matcher(
      await g.compile({ type: 'json_schema', schema, prefix: '<tool_call>\n', suffix: '\n</tool_call>' }),
      ckpt.eosTokenIds,
    );
    let text = '';
    for (let i = 0; i < 100 && !m.isTerminated; i++) {
      const forced = m.jumpForwardString();
      const ids = forced ? ckpt.tokenizer.encode(forced) : [];
      if (ids.length && ids.every((t) => m.accept(t))) {
        text += forced;
        continue;
      }
      const mask = await m.bitmask();
      let t = 0;
      while (!isAllowed(mask, t)) t++;
      expect(m.accept(t)).toBe(true);
      if (!ckpt.eosTokenIds.includes(t)) text += ckpt.tokenizer.decode([t]);
    }
    expect(text).toMatch(
      /^<tool_call>\n\{"name": "get_weather", "arguments": \{"root": "(x\\"y|z)"\}\}\n<\/tool_call>$/,
    );
    await g.close();
  });
});
