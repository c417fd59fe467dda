import type { GuidedSpec } from '@switchyard/core';
import { badRequest } from './errors.js';

/** One function the model may call (OpenAI's `tools[i].function`). */
export interface ToolDef {
  name: string;
  description?: string;
  parameters: Record<string, unknown>;
  strict?: boolean;
}

export type ToolChoice = 'auto' | 'none' | 'required' | { name: string };

/**
 * How a model writes tool calls. `hermes`: Qwen2.5/3 and Hermes, `<tool_call>\n{"name": …,
 * "arguments": {…}}\n</tool_call>`; `llama3_json`: Llama 3.1/3.2, a bare JSON object
 * `{"name": …, "parameters": {…}}` (optionally after `<|python_tag|>`).
 */
export type ToolDialect = 'hermes' | 'llama3_json';

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface ToolRequest {
  tools: ToolDef[];
  choice: ToolChoice;
  /** The tools as the client sent them, for the chat template's `tools` variable. */
  raw: unknown[];
  /** `parallel_tool_calls` (default true): false keeps at most one call per answer. */
  parallel: boolean;
}

const NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** `tools` and `tool_choice` of a chat body, checked; undefined when the request has no tools. */
export function parseTools(body: Record<string, unknown>): ToolRequest | undefined {
  const tools = body.tools;
  const choice = body.tool_choice;
  const parallel = body.parallel_tool_calls ?? true;
  if (typeof parallel !== 'boolean')
    throw badRequest('parallel_tool_calls must be true or false', 'parallel_tool_calls');
  if (tools === undefined || tools === null) {
    if (choice !== undefined && choice !== null && choice !== 'none' && choice !== 'auto')
      throw badRequest(
        'tool_choice needs tools: send the functions the model may call in tools',
        'tool_choice',
      );
    return undefined;
  }
  if (!Array.isArray(tools) || tools.length === 0 || tools.length > 128)
    throw badRequest(
      'tools must be a non-empty array (at most 128) of {type: "function", function: {...}}',
      'tools',
    );
  const defs = tools.map((t, i): ToolDef => {
    const f = (t as { type?: unknown; function?: Record<string, unknown> })?.function;
    if ((t as { type?: unknown })?.type !== 'function' || !f || typeof f !== 'object')
      throw badRequest(
        `tools[${i}] must be {"type": "function", "function": {"name": …, "parameters": {…}}}`,
        'tools',
      );
    if (typeof f.name !== 'string' || !NAME.test(f.name))
      throw badRequest(`tools[${i}].function.name must be 1-64 letters, digits, _ or -`, 'tools');
    const params = f.parameters ?? { type: 'object', properties: {} };
    if (typeof params !== 'object' || Array.isArray(params) || params === null)
      throw badRequest(`tools[${i}].function.parameters must be a JSON schema object`, 'tools');
    if (f.description !== undefined && typeof f.description !== 'string')
      throw badRequest(`tools[${i}].function.description must be a string`, 'tools');
    return {
      name: f.name,
      description: f.description as string | undefined,
      parameters: params as Record<string, unknown>,
      strict: f.strict === true,
    };
  });
  const names = new Set(defs.map((d) => d.name));
  if (names.size !== defs.length) throw badRequest('tools must have distinct function names', 'tools');
  let parsed: ToolChoice = 'auto';
  if (choice === 'auto' || choice === 'none' || choice === 'required') parsed = choice;
  else if (choice !== undefined && choice !== null) {
    const name = (choice as { function?: { name?: unknown } })?.function?.name;
    if ((choice as { type?: unknown })?.type !== 'function' || typeof name !== 'string')
      throw badRequest(
        'tool_choice must be "auto", "none", "required" or {"type": "function", "function": {"name": …}}',
        'tool_choice',
      );
    if (!names.has(name))
      throw badRequest(
        `tool_choice names '${name}', which is not in tools (${[...names].join(', ')})`,
        'tool_choice',
      );
    parsed = { name };
  }
  return { tools: defs, choice: parsed, raw: tools, parallel };
}

/** The dialect a chat template speaks: Llama 3.1's JSON when it mentions ipython / python_tag. */
export function toolDialect(templateSource: string | undefined): ToolDialect {
  if (!templateSource) return 'hermes';
  if (templateSource.includes('<tool_call>')) return 'hermes';
  if (templateSource.includes('<|python_tag|>') || templateSource.includes('ipython')) return 'llama3_json';
  return 'hermes';
}

/** The JSON of one call to `tool` in a dialect. */
function callSchema(tool: ToolDef, dialect: ToolDialect): Record<string, unknown> {
  const args = dialect === 'hermes' ? 'arguments' : 'parameters';
  return {
    type: 'object',
    properties: { name: { const: tool.name }, [args]: tool.parameters },
    required: ['name', args],
    additionalProperties: false,
  };
}

/**
 * The grammar that makes the model call a tool: one named function, or any of them for
 * `required`. Undefined for `auto` and `none` (the model chooses; the parser reads what it wrote).
 */
export function toolCallGrammar(req: ToolRequest, dialect: ToolDialect): GuidedSpec | undefined {
  const { choice } = req;
  if (choice === 'auto' || choice === 'none') return undefined;
  const tools = typeof choice === 'object' ? req.tools.filter((t) => t.name === choice.name) : req.tools;
  const schemas = tools.map((t) => callSchema(t, dialect));
  const schema = schemas.length === 1 ? schemas[0] : { anyOf: schemas };
  return dialect === 'hermes'
    ? { type: 'json_schema', schema, prefix: '<tool_call>\n', suffix: '\n</tool_call>', param: 'tool_choice' }
    : { type: 'json_schema', schema, param: 'tool_choice' };
}

/**
 * A system message describing the tools in the Hermes format, for chat templates that do not
 * render `tools` themselves (without it the model would not know them).
 */
export function toolsSystemPrompt(tools: unknown[]): string {
  return [
    '# Tools',
    '',
    'You may call one or more functions to assist with the user query.',
    '',
    'You are provided with function signatures within <tools></tools> XML tags:',
    '<tools>',
    ...tools.map((t) => JSON.stringify(t)),
    '</tools>',
    '',
    'For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:',
    '<tool_call>',
    '{"name": <function-name>, "arguments": <args-json-object>}',
    '</tool_call>',
  ].join('\n');
}

let nextCallNum = 0;
const callId = () => `call_${Date.now().toString(36)}${(nextCallNum++).toString(36).padStart(4, '0')}`;

function toCall(value: unknown, known: Set<string>): ToolCall | undefined {
  const v = value as { name?: unknown; arguments?: unknown; parameters?: unknown };
  if (!v || typeof v !== 'object' || typeof v.name !== 'string' || !known.has(v.name)) return undefined;
  const args = v.arguments ?? v.parameters ?? {};
  if (typeof args !== 'object' || args === null || Array.isArray(args)) return undefined;
  return { id: callId(), type: 'function', function: { name: v.name, arguments: JSON.stringify(args) } };
}

const HERMES = /<tool_call>\s*([\s\S]*?)\s*(?:<\/tool_call>|$)/g;

/**
 * Splits a finished output into text and tool calls. Calls that do not parse, or name a function
 * not in `tools`, stay in the text (the client sees what the model wrote).
 */
export function parseToolCalls(
  text: string,
  dialect: ToolDialect,
  tools: ToolDef[],
): { content: string | null; calls: ToolCall[] } {
  const known = new Set(tools.map((t) => t.name));
  const calls: ToolCall[] = [];
  if (dialect === 'hermes') {
    const content = text.replace(HERMES, (whole, json: string) => {
      try {
        const call = toCall(JSON.parse(json), known);
        if (call) {
          calls.push(call);
          return '';
        }
      } catch {}
      return whole;
    });
    return { content: content.trim() === '' ? null : content.trim(), calls };
  }
  const body = text.replace(/^\s*(<\|python_tag\|>)?\s*/, '');
  if (!body.startsWith('{')) return { content: text, calls };
  for (const part of body.split(/;\s*(?=\{)/)) {
    try {
      const call = toCall(JSON.parse(part), known);
      if (!call) return { content: text, calls: [] };
      calls.push(call);
    } catch {
      return { content: text, calls: [] };
    }
  }
  return { content: null, calls };
}

/** What one streamed text delta becomes: plain content, and tool calls completed by it. */
export interface ToolStreamDelta {
  content: string;
  calls: ToolCall[];
}

/**
 * Turns a stream of text deltas into content deltas and tool-call deltas. Text that may begin a
 * tool call is held back until it is known; a call is sent whole (name and arguments) once its
 * closing tag (or, for Llama's bare JSON, the end of the output) arrives.
 */
export class ToolCallStream {
  private buffer = '';
  private inCall = false;
  /** Llama 3.1 JSON: undecided until the first non-space text shows whether the output is a call. */
  private jsonMode: boolean | undefined;
  private readonly known: Set<string>;

  constructor(
    private readonly dialect: ToolDialect,
    private readonly tools: ToolDef[],
  ) {
    this.known = new Set(tools.map((t) => t.name));
  }

  push(text: string): ToolStreamDelta {
    this.buffer += text;
    return this.dialect === 'hermes' ? this.hermes(false) : this.llama(false);
  }

  /** Whatever is left at the end of the output. */
  finish(): ToolStreamDelta {
    return this.dialect === 'hermes' ? this.hermes(true) : this.llama(true);
  }

  private hermes(final: boolean): ToolStreamDelta {
    const out: ToolStreamDelta = { content: '', calls: [] };
    const OPEN = '<tool_call>';
    const CLOSE = '</tool_call>';
    while (this.buffer) {
      if (!this.inCall) {
        const i = this.buffer.indexOf(OPEN);
        if (i >= 0) {
          out.content += this.buffer.slice(0, i);
          this.buffer = this.buffer.slice(i + OPEN.length);
          this.inCall = true;
          continue;
        }
        // Hold back a tail that could still grow into "<tool_call>".
        let keep = 0;
        if (!final)
          for (let k = Math.min(OPEN.length - 1, this.buffer.length); k > 0; k--)
            if (OPEN.startsWith(this.buffer.slice(-k))) {
              keep = k;
              break;
            }
        out.content += this.buffer.slice(0, this.buffer.length - keep);
        this.buffer = this.buffer.slice(this.buffer.length - keep);
        break;
      }
      const j = this.buffer.indexOf(CLOSE);
      if (j < 0 && !final) break;
      const json = (j < 0 ? this.buffer : this.buffer.slice(0, j)).trim();
      let call: ToolCall | undefined;
      try {
        call = toCall(JSON.parse(json), this.known);
      } catch {}
      if (call) out.calls.push(call);
      else out.content += `${OPEN}${j < 0 ? this.buffer : this.buffer.slice(0, j + CLOSE.length)}`;
      this.buffer = j < 0 ? '' : this.buffer.slice(j + CLOSE.length);
      this.inCall = false;
    }
    return out;
  }

  private llama(final: boolean): ToolStreamDelta {
    if (this.jsonMode === undefined) {
      const head = this.buffer.trimStart();
      if (head === '' && !final) return { content: '', calls: [] };
      this.jsonMode =
        head.startsWith('{') || head.startsWith('<|python_tag|>') || '<|python_tag|>'.startsWith(head);
    }
    if (!this.jsonMode) {
      const content = this.buffer;
      this.buffer = '';
      return { content, calls: [] };
    }
    if (!final) return { content: '', calls: [] };
    const { content, calls } = parseToolCalls(this.buffer, 'llama3_json', this.tools);
    this.buffer = '';
    return { content: content ?? '', calls };
  }
}

/** The tool fields of a chat message the client sent (checked), for templates that render them. */
export function toolMessageFields(
  m: Record<string, unknown>,
  i: number,
): { tool_calls?: unknown[]; tool_call_id?: string; name?: string } {
  const out: { tool_calls?: unknown[]; tool_call_id?: string; name?: string } = {};
  if (m.tool_calls !== undefined && m.tool_calls !== null) {
    if (!Array.isArray(m.tool_calls))
      throw badRequest(`messages[${i}].tool_calls must be an array`, 'messages');
    // Templates read arguments as an object (Qwen's `tool_call.arguments | tojson`); OpenAI sends JSON text.
    out.tool_calls = m.tool_calls.map((c: { function?: { name?: unknown; arguments?: unknown } }, j) => {
      const f = c?.function;
      if (!f || typeof f.name !== 'string')
        throw badRequest(`messages[${i}].tool_calls[${j}].function.name must be a string`, 'messages');
      let args = f.arguments;
      if (typeof args === 'string') {
        try {
          args = JSON.parse(args);
        } catch {
          throw badRequest(
            `messages[${i}].tool_calls[${j}].function.arguments must be JSON text`,
            'messages',
          );
        }
      }
      return { ...c, function: { name: f.name, arguments: args } };
    });
  }
  if (m.tool_call_id !== undefined && m.tool_call_id !== null) {
    if (typeof m.tool_call_id !== 'string')
      throw badRequest(`messages[${i}].tool_call_id must be a string`, 'messages');
    out.tool_call_id = m.tool_call_id;
  }
  if (typeof m.name === 'string') out.name = m.name;
  return out;
}

/** How a chat request's output is read for tool calls (undefined: plain text). */
export interface ToolOutput {
  dialect: ToolDialect;
  tools: ToolDef[];
  /** False: only the first call the model makes is returned (`parallel_tool_calls: false`). */
  parallel: boolean;
}

/**
 * Prepares a chat request that carries tools: the chat template renders them (its `tools`
 * variable) or, when it cannot, a system message describes them; `required` and a named choice
 * become a grammar. Returns how to read the output (nothing to parse for `tool_choice: "none"`).
 */
export function applyTools(
  request: {
    messages?: { role: string; content: unknown }[];
    chatTemplateKwargs?: Record<string, unknown>;
    sampling?: { guided?: GuidedSpec };
  },
  tools: ToolRequest | undefined,
  template: { source: string; rendersTools: boolean } | undefined,
): ToolOutput | undefined {
  if (!tools) return undefined;
  const dialect = toolDialect(template?.source);
  if (template?.rendersTools)
    request.chatTemplateKwargs = { ...request.chatTemplateKwargs, tools: tools.raw };
  else if (tools.choice !== 'none' && request.messages) {
    const prompt = toolsSystemPrompt(tools.raw);
    const [first, ...rest] = request.messages;
    request.messages =
      first?.role === 'system' && typeof first.content === 'string'
        ? [{ ...first, content: `${first.content}\n\n${prompt}` }, ...rest]
        : [{ role: 'system', content: prompt }, ...request.messages];
  }
  if (tools.choice === 'none') return undefined;
  const grammar = toolCallGrammar(tools, dialect);
  if (grammar) {
    if (request.sampling?.guided)
      throw badRequest(
        `tool_choice "${typeof tools.choice === 'string' ? tools.choice : tools.choice.name}" constrains the output already; drop ${request.sampling.guided.param ?? 'the other constraint'}`,
        'tool_choice',
      );
    request.sampling = { ...request.sampling, guided: grammar };
  }
  return { dialect, tools: tools.tools, parallel: tools.parallel };
}
