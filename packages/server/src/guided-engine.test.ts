import type { Engine, EngineOptions, GenerateRequest, GuidedSpec } from '@switchyard/core';
import { fixture, fixtureTitle } from '@switchyard/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine } from './create-engine.js';

/**
 * Guided decoding through the whole engine on a random-weight model: the grammar, not the model,
 * makes the output valid — under every scheduler × KV manager, with n > 1, sampling, stop strings,
 * logprobs, preemption and jump-forward.
 */
const fx = fixture('qwen2-tiny');

const PERSON: GuidedSpec = {
  type: 'json_schema',
  schema: {
    type: 'object',
    properties: {
      name: { type: 'string', maxLength: 8 },
      age: { type: 'integer', minimum: 0, maximum: 120 },
      tags: { type: 'array', items: { enum: ['a', 'b', 'c'] }, maxItems: 3 },
      ok: { type: 'boolean' },
    },
    required: ['name', 'age', 'tags', 'ok'],
    additionalProperties: false,
  },
};

function checkPerson(text: string): void {
  const v = JSON.parse(text);
  expect(Object.keys(v)).toEqual(['name', 'age', 'tags', 'ok']);
  expect(typeof v.name).toBe('string');
  expect(v.name.length).toBeLessThanOrEqual(8);
  expect(Number.isInteger(v.age) && v.age >= 0 && v.age <= 120).toBe(true);
  expect(v.tags.every((t: string) => ['a', 'b', 'c'].includes(t))).toBe(true);
  expect(typeof v.ok).toBe('boolean');
}

const prompts = ['Describe a person as JSON:', 'Another one:', 'The capital of France is'];
const req = (prompt: string, sampling: GenerateRequest['sampling'] = {}): GenerateRequest => ({
  prompt,
  sampling: { maxTokens: 80, guided: PERSON, ...sampling },
});

describe.skipIf(fx.missing)(fixtureTitle(fx, 'guided decoding in the engine (qwen2-tiny)'), () => {
  for (const [scheduler, attention] of [
    ['fcfs', 'paged'],
    ['fcfs', 'radix'],
    ['continuous', 'paged'],
    ['continuous', 'radix'],
  ] as const) {
    it(`${scheduler} × ${attention}: valid JSON, greedy and sampled with n = 2, stop strings and logprobs`, async () => {
      const options: Partial<EngineOptions> = { scheduler, attention, checkIntegrity: true };
      const engine = await createEngine({ model: fx.dir, ...options });
      try {
        const results = await engine.generate([
          req(prompts[0]),
          req(prompts[1], { temperature: 1, seed: 7, n: 2 }),
          req(prompts[2], { logprobs: 2, temperature: 0.8, seed: 1 }),
        ]);
        for (const r of results)
          for (const o of r.outputs) {
            expect(o.finishReason).toBe('stop');
            checkPerson(o.text);
          }
        const lp = results[2].outputs[0];
        expect(lp.logprobs).toHaveLength(lp.tokenIds.length);
        // A stop string cuts the constrained output where it first appears.
        const [cut] = await engine.generate([req(prompts[0], { stop: ['age'] })]);
        expect(cut.outputs[0].text).toMatch(/^\{"name": ".*", "$/);
        expect(engine.guided.numMatchers).toBe(0);
      } finally {
        await engine.close();
      }
    });
  }

  it('preemption by recompute keeps the matcher in step with the output (no token fed twice)', async () => {
    const engine = await createEngine({
      model: fx.dir,
      scheduler: 'continuous',
      kvCacheTokens: 96,
      blockSize: 4,
      checkIntegrity: true,
    });
    try {
      const results = await engine.generate(
        Array.from({ length: 6 }, (_, i) => req(`${prompts[i % 3]} ${i}`, { temperature: 1, seed: i })),
      );
      expect(engine.stats().numPreemptions).toBeGreaterThan(0);
      for (const r of results) checkPerson(r.outputs[0].text);
    } finally {
      await engine.close();
    }
  });

  describe('one engine', () => {
    let engine: Engine;
    beforeAll(async () => {
      engine = await createEngine({ model: fx.dir, checkIntegrity: true });
    });
    afterAll(() => engine.close());

    it('jump-forward appends the forced tokens without a model step: same validity, fewer steps', async () => {
      const run = async (jumpForward: boolean) => {
        const steps = engine.metrics.numSteps;
        const [r] = await engine.generate([req(prompts[0], { jumpForward })]);
        return {
          text: r.outputs[0].text,
          n: r.outputs[0].tokenIds.length,
          steps: engine.metrics.numSteps - steps,
        };
      };
      const off = await run(false);
      const on = await run(true);
      checkPerson(off.text);
      checkPerson(on.text);
      // Off: one step per token. On: the keys and punctuation come without sampling.
      expect(off.steps).toBe(off.n);
      expect(on.steps).toBeLessThan(on.n);
      expect(on.steps).toBeLessThan(off.steps);
    });

    it.each([
      [{ type: 'regex', pattern: '[0-9]{3}-[a-z]{2,4}' }, /^[0-9]{3}-[a-z]{2,4}$/],
      [{ type: 'choice', choices: ['Paris', 'London', 'Berlin'] }, /^(Paris|London|Berlin)$/],
      [
        { type: 'grammar', grammar: 'root ::= "The answer is " ("yes" | "no") "."' },
        /^The answer is (yes|no)\.$/,
      ],
      [{ type: 'json_object' }, /^\{.*\}$/],
    ] as [GuidedSpec, RegExp][])('%j is always matched (sampled, 5 seeds)', async (guided, re) => {
      const results = await engine.generate(
        Array.from({ length: 5 }, (_, seed) => ({
          prompt: prompts[2],
          sampling: { guided, temperature: 1, seed, maxTokens: 200 },
        })),
      );
      for (const r of results) {
        expect(r.outputs[0].text).toMatch(re);
        if (guided.type === 'json_object') JSON.parse(r.outputs[0].text);
      }
    });

    it('a grammar XGrammar rejects is a 400 naming the reason; nothing is enqueued', async () => {
      await expect(
        engine.generate([{ prompt: 'x', sampling: { guided: { type: 'grammar', grammar: 'root ::= (' } } }]),
      ).rejects.toMatchObject({
        kind: 'invalid_request',
        message: expect.stringMatching(/EBNF parser error/),
      });
      expect(engine.numUnfinished()).toBe(0);
      const [ok] = await engine.generate([
        { prompt: 'x', sampling: { guided: { type: 'choice', choices: ['ok'] } } },
      ]);
      expect(ok.outputs[0].text).toBe('ok');
    });

    it('min_tokens holds EOS back; logit_bias steers the pick', async () => {
      const eos = engine.checkpoint.eosTokenIds[0];
      const [biased] = await engine.generate([
        { prompt: 'x', sampling: { maxTokens: 4, logitBias: { [eos]: 100 }, minTokens: 3 } },
      ]);
      expect(biased.outputs[0].tokenIds.slice(0, 3)).not.toContain(eos);
      expect(biased.outputs[0].tokenIds[3]).toBe(eos);
      const [forced] = await engine.generate([
        { prompt: 'x', sampling: { maxTokens: 3, logitBias: { 42: 100 } } },
      ]);
      expect(forced.outputs[0].tokenIds).toEqual([42, 42, 42]);
    });
  });
});
