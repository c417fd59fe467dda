import { describe, expect, it } from 'vitest';
import { SwitchyardError } from '../errors.js';
import { DEFAULT_SAMPLING } from '../sampling-params.js';
import { validateSamplingParams } from './validate.js';

const limits = { maxModelLen: 100, promptLen: 10, vocabSize: 1000 };
const v = (input: Record<string, unknown>, l = limits) => validateSamplingParams(input, l);

describe('validateSamplingParams', () => {
  it('fills the defaults and ignores nulls', () => {
    expect(v({ temperature: null, topP: undefined })).toEqual({ ...DEFAULT_SAMPLING, maxTokens: 90 });
  });

  it('refuses unknown keys, naming the camelCase key for a snake_case one', () => {
    expect(() => v({ max_tokens: 64 })).toThrow(
      /max_tokens: is not a sampling key of the code API; use maxTokens/,
    );
    expect(() => v({ top_p: 0.5 })).toThrow(/use topP/);
    expect(() => v({ max_new_tokens: 5 })).toThrow(/use maxTokens/);
    expect(() => v({ foo: 1 })).toThrow(/foo: is not a sampling key; known: temperature, topP/);
  });

  it('accepts good values', () => {
    const p = v({
      temperature: 0.7,
      topP: 0.9,
      topK: 40,
      minP: 0.05,
      repetitionPenalty: 1.1,
      presencePenalty: -2,
      frequencyPenalty: 2,
      n: 4,
      maxTokens: 90,
      logprobs: 20,
      seed: -3,
      stop: ['\n\n', 'END'],
      stopTokenIds: [0, 999],
      ignoreEos: true,
    });
    expect(p).toMatchObject({ temperature: 0.7, topK: 40, n: 4, maxTokens: 90, logprobs: 20, seed: -3 });
    expect(p.stop).toEqual(['\n\n', 'END']);
    expect(p.ignoreEos).toBe(true);
    expect(v({ logprobs: 0 }).logprobs).toBe(0);
    expect(v({}).logprobs).toBeUndefined();
    expect(v({}).seed).toBeUndefined();
  });

  it('normalizes top_k -1, tiny temperatures and a lone stop string', () => {
    expect(v({ topK: -1 }).topK).toBe(0);
    expect(v({ topK: 0 }).topK).toBe(0);
    expect(v({ temperature: 1e-7 }).temperature).toBe(0);
    expect(v({ stop: 'x' }).stop).toEqual(['x']);
  });

  const bad: [string, Record<string, unknown>][] = [
    ['temperature', { temperature: -0.1 }],
    ['temperature', { temperature: Number.POSITIVE_INFINITY }],
    ['temperature', { temperature: 101 }],
    ['temperature', { temperature: '0.5' }],
    ['top_p', { topP: 0 }],
    ['top_p', { topP: 1.01 }],
    ['top_k', { topK: -2 }],
    ['top_k', { topK: 2.5 }],
    ['min_p', { minP: -0.01 }],
    ['min_p', { minP: 1.5 }],
    ['repetition_penalty', { repetitionPenalty: 0 }],
    ['repetition_penalty', { repetitionPenalty: 101 }],
    ['presence_penalty', { presencePenalty: 2.5 }],
    ['frequency_penalty', { frequencyPenalty: -2.5 }],
    ['n', { n: 0 }],
    ['n', { n: 129 }],
    ['n', { n: 1.5 }],
    ['max_tokens', { maxTokens: 0 }],
    ['max_tokens', { maxTokens: 2.5 }],
    ['max_tokens', { maxTokens: 91 }],
    ['logprobs', { logprobs: -1 }],
    ['logprobs', { logprobs: 21 }],
    ['logprobs', { logprobs: true }],
    ['seed', { seed: 1.5 }],
    ['stop', { stop: [1] }],
    ['stop', { stop: { a: 1 } }],
    ['stop', { stop: [''] }],
    ['stop', { stop: Array.from({ length: 17 }, (_, i) => `s${i}`) }],
    ['stop_token_ids', { stopTokenIds: [1000] }],
    ['stop_token_ids', { stopTokenIds: [-1] }],
    ['stop_token_ids', { stopTokenIds: 5 }],
    ['ignore_eos', { ignoreEos: 'yes' }],
  ];
  it.each(bad)('rejects a bad %s', (name, input) => {
    let err: unknown;
    try {
      v(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SwitchyardError);
    const e = err as SwitchyardError;
    expect(e.param).toBe(name);
    expect(e.kind).toBe('invalid_request');
    expect(e.message.startsWith(`${name}:`)).toBe(true);
  });

  it('says the numbers when max_tokens does not fit', () => {
    expect(() => v({ maxTokens: 95 })).toThrow(/95 .*10 tokens.*100.*at most 90/);
  });

  it('caps the default max_tokens to the room left, and rejects a full context', () => {
    expect(v({}, { ...limits, promptLen: 95 }).maxTokens).toBe(5);
    expect(v({}, { ...limits, promptLen: 10 }).maxTokens).toBe(90);
    expect(() => v({}, { ...limits, promptLen: 100 })).toThrow(
      /^max_tokens: .*100 tokens.*shorten the prompt/,
    );
    expect(() => v({ maxTokens: 1 }, { ...limits, promptLen: 100 })).toThrow(/^max_tokens: /);
  });
});

describe('validateSamplingParams: logit_bias and min_tokens', () => {
  it('accepts token-id keys (numbers or decimal strings) and biases from -100 to 100', () => {
    expect(v({ logitBias: { '5': 100, 7: -100 } }).logitBias).toEqual({ 5: 100, 7: -100 });
    expect(v({ logitBias: {} }).logitBias).toBeUndefined();
    expect(v({ minTokens: 3, maxTokens: 3 }).minTokens).toBe(3);
  });

  it('names the parameter and the rule on bad values', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ logitBias: { '-1': 1 } }, /logit_bias: "-1" is not a token id \(0 to 999\)/],
      [{ logitBias: { 1000: 1 } }, /logit_bias: "1000"/],
      [{ logitBias: { abc: 1 } }, /logit_bias: "abc"/],
      [{ logitBias: { 3: 101 } }, /logit_bias: the bias of token 3 must be a number from -100 to 100/],
      [{ logitBias: { 3: '1' } }, /logit_bias: the bias of token 3/],
      [{ logitBias: [1] }, /logit_bias: must be an object/],
      [{ minTokens: -1 }, /min_tokens: must be an integer >= 0/],
      [{ minTokens: 5, maxTokens: 4 }, /min_tokens: must be at most max_tokens \(4\), got 5/],
    ];
    for (const [input, re] of bad) {
      expect(() => v(input)).toThrow(SwitchyardError);
      expect(() => v(input)).toThrow(re);
    }
  });
});

describe('structured-output parameters', () => {
  const limits = { maxModelLen: 100, promptLen: 10, vocabSize: 50 };
  it('checks min_tokens, logit_bias and guided specs, naming the parameter', () => {
    expect(validateSamplingParams({ minTokens: 3, maxTokens: 5 }, limits).minTokens).toBe(3);
    expect(() => validateSamplingParams({ minTokens: 6, maxTokens: 5 }, limits)).toThrow(
      /min_tokens: must be at most max_tokens \(5\)/,
    );
    expect(validateSamplingParams({ logitBias: { '7': -100 } as never }, limits).logitBias).toEqual({
      7: -100,
    });
    expect(() => validateSamplingParams({ logitBias: { '50': 1 } as never }, limits)).toThrow(
      /logit_bias: "50" is not a token id/,
    );
    expect(() => validateSamplingParams({ logitBias: { '1': 101 } as never }, limits)).toThrow(
      /from -100 to 100/,
    );
    expect(() =>
      validateSamplingParams({ guided: { type: 'choice', choices: [], param: 'guided_choice' } }, limits),
    ).toThrow(/^guided_choice: the choices must be a non-empty array/);
    expect(() => validateSamplingParams({ guided: { type: 'xml' } as never }, limits)).toThrow(
      /unknown guided decoding type "xml"; known: json_schema, json_object/,
    );
    const g = validateSamplingParams(
      { guided: { type: 'json_schema', schema: { type: 'object' }, prefix: '<a>' } },
      limits,
    ).guided;
    expect(g).toEqual({
      type: 'json_schema',
      schema: { type: 'object' },
      strict: undefined,
      prefix: '<a>',
      param: 'guided',
    });
  });
});
