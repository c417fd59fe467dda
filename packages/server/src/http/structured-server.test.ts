import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixture, fixtureTitle } from '@switchyard/core/testing';
import fc from 'fast-check';
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { DEMO_MODEL } from '../cli.js';
import { createEngine } from '../create-engine.js';
import { buildServer, type Server } from './app.js';

/** Structured output and tool calls through the official client on a real server on 127.0.0.1. */
async function serve(model: string): Promise<{ server: Server; client: OpenAI; url: string; name: string }> {
  const engine = await createEngine({ model });
  const server = buildServer({ engine });
  const url = await server.app.listen({ host: '127.0.0.1', port: 0 });
  return {
    server,
    url,
    name: server.modelName,
    client: new OpenAI({ baseURL: `${url}/v1`, apiKey: 'x', maxRetries: 0 }),
  };
}

const Person = z.object({
  name: z.string().max(12),
  age: z.number().int().min(0).max(120),
  pets: z.array(z.enum(['cat', 'dog', 'fish'])).max(3),
  member: z.boolean(),
});

const WEATHER = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 16 }, unit: { enum: ['c', 'f'] } },
      required: ['city', 'unit'],
      additionalProperties: false,
    },
  },
};
const TIME = {
  type: 'function' as const,
  function: {
    name: 'get_time',
    parameters: {
      type: 'object',
      properties: { zone: { type: 'string', maxLength: 8 } },
      required: ['zone'],
    },
  },
};

const fx = fixture('qwen2-tiny');
const models = [
  { title: 'the demo model', dir: DEMO_MODEL, missing: undefined as string | undefined },
  { title: 'qwen2-tiny (random weights)', dir: fx.dir, missing: fx.missing },
];

for (const m of models) {
  describe.skipIf(m.missing)(
    fixtureTitle({ ...fx, missing: m.missing }, `structured output on ${m.title}`),
    () => {
      let s: Awaited<ReturnType<typeof serve>>;
      beforeAll(async () => {
        s = await serve(m.dir);
      });
      afterAll(() => s.server.drain(1000));
      const messages = [{ role: 'user' as const, content: 'Describe a person.' }];

      it('chat.completions.parse() with a zod schema returns the parsed object (greedy and sampled)', async () => {
        for (const temperature of [0, 1]) {
          const r = await s.client.chat.completions.parse({
            model: s.name,
            messages,
            max_tokens: 120,
            temperature,
            seed: 3,
            response_format: zodResponseFormat(Person, 'person'),
          });
          const parsed = r.choices[0].message.parsed;
          expect(parsed).not.toBeNull();
          expect(Person.parse(parsed)).toEqual(parsed);
        }
      });

      it('json_object mode gives a JSON object', async () => {
        const r = await s.client.chat.completions.create({
          model: s.name,
          messages,
          max_tokens: 60,
          response_format: { type: 'json_object' },
        });
        const v = JSON.parse(r.choices[0].message.content!);
        expect(typeof v === 'object' && !Array.isArray(v) && v !== null).toBe(true);
      });

      it('vLLM guided_regex / guided_choice and SGLang regex are always matched', async () => {
        for (let seed = 0; seed < 3; seed++) {
          const re = await s.client.chat.completions.create({
            model: s.name,
            messages,
            max_tokens: 30,
            temperature: 1,
            seed,
            // @ts-expect-error vLLM extension
            guided_regex: '(19|20)[0-9]{2}-[01][0-9]',
          });
          expect(re.choices[0].message.content).toMatch(/^(19|20)[0-9]{2}-[01][0-9]$/);
          const ch = await s.client.completions.create({
            model: s.name,
            prompt: 'Pick a colour:',
            max_tokens: 10,
            temperature: 1,
            seed,
            // @ts-expect-error vLLM extension
            guided_choice: ['red', 'green', 'dark blue'],
          });
          expect(['red', 'green', 'dark blue']).toContain(ch.choices[0].text);
        }
        const native = await fetch(`${s.url}/generate`, {
          method: 'POST',
          body: JSON.stringify({
            text: 'Code:',
            sampling_params: { regex: '[A-Z]{3}[0-9]{2}', max_new_tokens: 20 },
          }),
          headers: { 'content-type': 'application/json' },
        }).then((r) => r.json());
        expect(native.text).toMatch(/^[A-Z]{3}[0-9]{2}$/);
      });

      it('a forced tool call comes back as tool_calls with valid JSON arguments, streamed and not', async () => {
        const base = {
          model: s.name,
          messages: [{ role: 'user' as const, content: 'Weather in Paris?' }],
          tools: [WEATHER, TIME],
          max_tokens: 80,
        };
        for (const tool_choice of [
          'required',
          { type: 'function', function: { name: 'get_weather' } },
        ] as const) {
          const r = await s.client.chat.completions.create({ ...base, tool_choice });
          const c = r.choices[0];
          expect(c.finish_reason).toBe('tool_calls');
          expect(c.message.tool_calls).toHaveLength(1);
          const call = c.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
          expect(call.id).toMatch(/^call_/);
          const args = JSON.parse(call.function.arguments);
          if (typeof tool_choice === 'object' || call.function.name === 'get_weather') {
            expect(call.function.name).toBe('get_weather');
            expect(['c', 'f']).toContain(args.unit);
            expect(typeof args.city).toBe('string');
          } else expect(typeof args.zone).toBe('string');
        }
        const stream = await s.client.chat.completions.create({
          ...base,
          tool_choice: { type: 'function', function: { name: 'get_weather' } },
          stream: true,
        });
        let content = '';
        let finish: string | null = null;
        const calls: { name?: string; args: string }[] = [];
        for await (const chunk of stream) {
          const d = chunk.choices[0]?.delta;
          content += d?.content ?? '';
          for (const tc of d?.tool_calls ?? []) {
            calls[tc.index] ??= { args: '' };
            if (tc.function?.name) calls[tc.index].name = tc.function.name;
            calls[tc.index].args += tc.function?.arguments ?? '';
          }
          finish = chunk.choices[0]?.finish_reason ?? finish;
        }
        expect(finish).toBe('tool_calls');
        expect(content).toBe('');
        expect(calls).toHaveLength(1);
        expect(calls[0].name).toBe('get_weather');
        expect(Object.keys(JSON.parse(calls[0].args))).toEqual(['city', 'unit']);
      });

      it.each([
        [
          { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 12 } } } },
          'response_format',
          /Type should be a string/,
        ],
        [{ guided_regex: '(?=x)y' }, 'guided_regex', /regular expression/],
        [{ guided_grammar: 'root ::= "a" |' }, 'guided_grammar', /EBNF parser error/],
        [{ guided_json: '{"type": "object"' }, 'guided_json', /not valid JSON/],
        [{ guided_regex: 'a', guided_choice: ['b'] }, 'guided_choice', /at most one output constraint/],
        [{ tool_choice: 'required' }, 'tool_choice', /needs tools/],
      ])('%j is a 400 naming %s and the reason', async (extra, param, reason) => {
        const res = await fetch(`${s.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ messages, max_tokens: 5, ...extra }),
        });
        expect(res.status).toBe(400);
        const body = await res.json();
        expect(body.error.param).toBe(param);
        expect(body.error.message).toMatch(reason);
      });
    },
  );
}

describe.skipIf(fx.missing)(fixtureTitle(fx, 'tools through a tool-aware chat template'), () => {
  let dir: string;
  let s: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    // qwen2-tiny with a Qwen2.5-style template that renders `tools` and `tool_calls` (our own text).
    dir = mkdtempSync(join(tmpdir(), 'sy-tools-'));
    for (const f of [
      'config.json',
      'generation_config.json',
      'tokenizer.json',
      'tokenizer_config.json',
      'model.safetensors',
    ])
      cpSync(join(fx.dir, f), join(dir, f));
    writeFileSync(
      join(dir, 'chat_template.jinja'),
      [
        '{%- if tools %}<|im_start|>system\nTOOLS:{% for t in tools %}\n{{ t | tojson }}{% endfor %}\nCall them as <tool_call>\n{"name": …, "arguments": …}\n</tool_call><|im_end|>\n{% endif %}',
        '{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}',
        '{%- if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>\n{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}\n</tool_call>{% endfor %}{% endif %}<|im_end|>\n{% endfor %}',
        '{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}',
      ].join(''),
    );
    s = await serve(dir);
  });
  afterAll(async () => {
    await s?.server.drain(1000);
    rmSync(dir, { recursive: true, force: true });
  });

  it('renders the tools and earlier tool calls into the prompt', async () => {
    const messages = [
      { role: 'user', content: 'Weather?' },
      {
        role: 'assistant',
        content: '',
        tool_calls: [
          {
            id: 'call_1',
            type: 'function',
            function: { name: 'get_weather', arguments: '{"city": "Oslo", "unit": "c"}' },
          },
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: '12 C' },
    ];
    const plain = await fetch(`${s.url}/tokenize`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages }),
    }).then((r) => r.json());
    const r = await s.client.chat.completions.create({
      model: s.name,
      messages: messages as OpenAI.ChatCompletionMessageParam[],
      tools: [WEATHER],
      tool_choice: 'required',
      max_tokens: 60,
    });
    // The tools' text (and the rendered call) lengthen the prompt well past the plain one.
    expect(r.usage!.prompt_tokens).toBeGreaterThan(plain.count + 30);
    expect(r.choices[0].message.tool_calls![0]).toMatchObject({
      type: 'function',
      function: { name: 'get_weather' },
    });
  });
});

describe.skipIf(fx.missing)(fixtureTitle(fx, '200 random JSON schemas (property-based)'), () => {
  let s: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    s = await serve(fx.dir);
  });
  afterAll(() => s.server.drain(1000));

  const leaf = fc.oneof(
    fc.constant({ type: 'string' }),
    fc.integer({ min: 1, max: 8 }).map((n) => ({ type: 'string', maxLength: n })),
    fc.constant({ type: 'integer' }),
    fc
      .tuple(fc.integer({ min: -50, max: 0 }), fc.integer({ min: 1, max: 50 }))
      .map(([a, b]) => ({ type: 'integer', minimum: a, maximum: b })),
    fc.constant({ type: 'number' }),
    fc.constant({ type: 'boolean' }),
    fc.constant({ type: 'null' }),
    fc
      .uniqueArray(fc.stringMatching(/^[a-z]{1,6}$/), { minLength: 1, maxLength: 4 })
      .map((e) => ({ enum: e })),
  );
  const { schema } = fc.letrec((tie) => ({
    schema: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, tie('object'), tie('array')),
    object: fc
      .dictionary(fc.stringMatching(/^[a-z][a-z_]{0,7}$/), tie('schema'), { minKeys: 0, maxKeys: 3 })
      .chain((props) =>
        fc.subarray(Object.keys(props)).map((required) => ({ type: 'object', properties: props, required })),
      ),
    array: fc
      .tuple(tie('schema'), fc.integer({ min: 0, max: 3 }))
      .map(([items, max]) => ({ type: 'array', items, maxItems: max })),
  }));

  it('never produce invalid JSON or a 5xx', async () => {
    const samples = fc.sample(schema, { numRuns: 200, seed: 42 });
    let i = 0;
    for (const sc of samples) {
      const res = await fetch(`${s.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          messages: [{ role: 'user', content: 'JSON please' }],
          max_tokens: 160,
          temperature: 1,
          seed: i++,
          response_format: { type: 'json_schema', json_schema: { name: 's', schema: sc, strict: true } },
        }),
      });
      expect(res.status, JSON.stringify(sc)).toBe(200);
      const body = await res.json();
      const text = body.choices[0].message.content;
      expect(() => JSON.parse(text), `${JSON.stringify(sc)} → ${text}`).not.toThrow();
    }
  }, 120_000);
});
