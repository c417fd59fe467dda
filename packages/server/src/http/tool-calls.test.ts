import { describe, expect, it } from 'vitest';
import { parseToolCalls, parseTools, ToolCallStream, toolCallGrammar, toolDialect } from './tool-calls.js';

const tools = parseTools({
  tools: [
    {
      type: 'function',
      function: {
        name: 'get_weather',
        parameters: { type: 'object', properties: { city: { type: 'string' } } },
      },
    },
    { type: 'function', function: { name: 'get_time' } },
  ],
  tool_choice: 'auto',
})!;

describe('tool calls', () => {
  it('parses Hermes <tool_call> blocks (Qwen2.5/3) and keeps the rest as content', () => {
    const text =
      'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>';
    const r = parseToolCalls(text, 'hermes', tools.tools);
    expect(r.content).toBe('Let me check.');
    expect(r.calls.map((c) => [c.function.name, JSON.parse(c.function.arguments)])).toEqual([
      ['get_weather', { city: 'Oslo' }],
      ['get_time', {}],
    ]);
    // An unknown function or broken JSON stays text.
    expect(
      parseToolCalls('<tool_call>{"name": "rm", "arguments": {}}</tool_call>', 'hermes', tools.tools).calls,
    ).toEqual([]);
    expect(parseToolCalls('<tool_call>{"name": </tool_call>', 'hermes', tools.tools).content).toContain(
      '<tool_call>',
    );
  });

  it('parses Llama 3.1 JSON calls, with <|python_tag|> and several separated by ;', () => {
    const r = parseToolCalls(
      '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Rome"}}; {"name": "get_time", "parameters": {}}',
      'llama3_json',
      tools.tools,
    );
    expect(r.content).toBeNull();
    expect(r.calls.map((c) => c.function.name)).toEqual(['get_weather', 'get_time']);
    expect(parseToolCalls('The weather is fine.', 'llama3_json', tools.tools)).toEqual({
      content: 'The weather is fine.',
      calls: [],
    });
  });

  it('streams: text before a call flows, a split <tool_call> tag is held back, the call comes whole', () => {
    const s = new ToolCallStream('hermes', tools.tools);
    const pieces = [
      'Sure',
      '. <tool',
      '_call>\n{"name": "get_',
      'weather", "arguments": {"city": "Oslo"}}\n</tool_',
      'call>',
      ' done',
    ];
    const out = pieces.map((p) => s.push(p));
    out.push(s.finish());
    expect(out.map((d) => d.content).join('')).toBe('Sure.  done');
    expect(out[1].content).toBe('. ');
    const calls = out.flatMap((d) => d.calls);
    expect(calls).toHaveLength(1);
    expect(out.findIndex((d) => d.calls.length)).toBe(4);
    const llama = new ToolCallStream('llama3_json', tools.tools);
    expect(llama.push(' {"name": "get_time", ').calls).toEqual([]);
    expect(llama.push('"parameters": {}}').content).toBe('');
    expect(llama.finish().calls[0].function.name).toBe('get_time');
  });

  it('picks the dialect from the chat template and builds the forcing grammar', () => {
    expect(toolDialect('{{ "<tool_call>" }}')).toBe('hermes');
    expect(toolDialect('{%- if tools %}<|python_tag|>{% endif %} ipython')).toBe('llama3_json');
    expect(toolCallGrammar(tools, 'hermes')).toBeUndefined();
    const named = toolCallGrammar({ ...tools, choice: { name: 'get_time' } }, 'hermes')!;
    expect(named).toMatchObject({ type: 'json_schema', prefix: '<tool_call>\n', suffix: '\n</tool_call>' });
    const required = toolCallGrammar({ ...tools, choice: 'required' }, 'llama3_json')!;
    expect(required.type === 'json_schema' && (required.schema as { anyOf: unknown[] }).anyOf).toHaveLength(
      2,
    );
  });

  it('rejects malformed tools and choices naming the parameter', () => {
    expect(() => parseTools({ tools: [{ type: 'function', function: { name: 'a b' } }] })).toThrow(
      /tools\[0\].function.name/,
    );
    expect(() =>
      parseTools({ tools: tools.raw, tool_choice: { type: 'function', function: { name: 'nope' } } }),
    ).toThrow(/tool_choice names 'nope', which is not in tools \(get_weather, get_time\)/);
  });
});

describe('parallel_tool_calls', () => {
  const tools = [{ type: 'function', function: { name: 'f' } }];
  it('defaults to parallel calls, and false asks for at most one', () => {
    expect(parseTools({ tools })?.parallel).toBe(true);
    expect(parseTools({ tools, parallel_tool_calls: false })?.parallel).toBe(false);
  });

  it('refuses a value that is not a boolean, naming the field', () => {
    expect(() => parseTools({ tools, parallel_tool_calls: 'no' })).toThrow(
      'parallel_tool_calls must be true or false',
    );
  });
});
