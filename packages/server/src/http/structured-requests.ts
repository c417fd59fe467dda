import type { GuidedSpec, SamplingParams } from '@switchyard/core';
import { badRequest } from './errors.js';

type Body = Record<string, unknown>;

const isObject = (v: unknown): v is Body => !!v && typeof v === 'object' && !Array.isArray(v);
const present = (v: unknown) => v !== undefined && v !== null;

/** A JSON schema given as an object or as JSON text (vLLM accepts both for guided_json). */
function schemaOf(v: unknown, param: string): Record<string, unknown> | boolean {
  if (typeof v === 'string') {
    try {
      v = JSON.parse(v);
    } catch (e) {
      throw badRequest(`${param} is not valid JSON: ${(e as Error).message}`, param);
    }
  }
  if (!isObject(v) && typeof v !== 'boolean')
    throw badRequest(`${param} must be a JSON schema object`, param);
  return v;
}

function str(v: unknown, param: string): string {
  if (typeof v !== 'string' || v.length === 0) throw badRequest(`${param} must be a non-empty string`, param);
  return v;
}

/** OpenAI's `response_format`: text, json_object, or json_schema {name, schema, strict}. */
function responseFormat(v: unknown): GuidedSpec | undefined {
  const param = 'response_format';
  if (!isObject(v)) throw badRequest('response_format must be an object with a type', param);
  switch (v.type) {
    case 'text':
      return undefined;
    case 'json_object':
      return { type: 'json_object', param };
    case 'json_schema': {
      const js = v.json_schema;
      if (!isObject(js) || !present(js.schema))
        throw badRequest(
          'response_format.json_schema must be {"name": …, "schema": {…}, "strict": …}',
          param,
        );
      if (present(js.strict) && typeof js.strict !== 'boolean')
        throw badRequest('response_format.json_schema.strict must be a boolean', param);
      return {
        type: 'json_schema',
        schema: schemaOf(js.schema, param),
        // strict: true forbids properties the schema does not name; otherwise they are allowed.
        strict: js.strict === true,
        param,
      };
    }
    default:
      throw badRequest(
        `response_format.type must be text, json_object or json_schema, got ${JSON.stringify(v.type)}`,
        param,
      );
  }
}

/** The one output constraint a body asks for, from whichever of its names the client used. */
function pickOne(found: GuidedSpec[]): GuidedSpec | undefined {
  if (found.length > 1) {
    const names = found.map((g) => g.param).join(', ');
    throw badRequest(`give at most one output constraint; this request has ${names}`, found[1].param);
  }
  return found[0];
}

/** vLLM's guided_json / guided_regex / guided_choice / guided_grammar (chat and completions). */
function vllmGuided(body: Body): GuidedSpec[] {
  const out: GuidedSpec[] = [];
  if (present(body.guided_json))
    out.push({
      type: 'json_schema',
      schema: schemaOf(body.guided_json, 'guided_json'),
      param: 'guided_json',
    });
  if (present(body.guided_regex))
    out.push({ type: 'regex', pattern: str(body.guided_regex, 'guided_regex'), param: 'guided_regex' });
  if (present(body.guided_choice)) {
    const c = body.guided_choice;
    if (!Array.isArray(c) || c.length === 0 || !c.every((x) => typeof x === 'string' && x.length > 0))
      throw badRequest('guided_choice must be a non-empty array of non-empty strings', 'guided_choice');
    out.push({ type: 'choice', choices: c as string[], param: 'guided_choice' });
  }
  if (present(body.guided_grammar))
    out.push({
      type: 'grammar',
      grammar: str(body.guided_grammar, 'guided_grammar'),
      param: 'guided_grammar',
    });
  return out;
}

/** `logit_bias` ({"token id": bias}) and `min_tokens`, shared by the OpenAI routes. */
function biasAndMin(body: Body, minKey: string): Partial<SamplingParams> {
  const out: Partial<SamplingParams> = {};
  if (present(body.logit_bias)) {
    if (!isObject(body.logit_bias))
      throw badRequest('logit_bias must be an object {"token id": bias}', 'logit_bias');
    out.logitBias = body.logit_bias as Record<number, number>;
  }
  if (present(body[minKey])) {
    if (!Number.isInteger(body[minKey])) throw badRequest(`${minKey} must be an integer`, minKey);
    out.minTokens = body[minKey] as number;
  }
  if (present(body.jump_forward)) {
    if (typeof body.jump_forward !== 'boolean')
      throw badRequest('jump_forward must be a boolean', 'jump_forward');
    out.jumpForward = body.jump_forward;
  }
  return out;
}

/** The structured-output fields of a `/v1/chat/completions` or `/v1/completions` body. */
export function parseStructured(body: Body): Partial<SamplingParams> {
  const found = vllmGuided(body);
  if (present(body.response_format)) {
    const rf = responseFormat(body.response_format);
    if (rf) found.unshift(rf);
  }
  const guided = pickOne(found);
  return { ...biasAndMin(body, 'min_tokens'), ...(guided ? { guided } : {}) };
}

/** SGLang `/generate` sampling_params: `regex`, `json_schema` (JSON text), `ebnf`, `min_new_tokens`. */
export function parseNativeStructured(sp: Body): Partial<SamplingParams> {
  const found: GuidedSpec[] = [];
  if (present(sp.regex)) found.push({ type: 'regex', pattern: str(sp.regex, 'regex'), param: 'regex' });
  if (present(sp.json_schema))
    found.push({
      type: 'json_schema',
      schema: schemaOf(sp.json_schema, 'json_schema'),
      param: 'json_schema',
    });
  if (present(sp.ebnf)) found.push({ type: 'grammar', grammar: str(sp.ebnf, 'ebnf'), param: 'ebnf' });
  const guided = pickOne(found);
  return { ...biasAndMin(sp, 'min_new_tokens'), ...(guided ? { guided } : {}) };
}

/** vLLM's chat rendering options: `continue_final_message` (with `add_generation_prompt: false`). */
export function parseChatRendering(body: Body): { continueFinalMessage?: boolean } {
  const cont = body.continue_final_message;
  const addGen = body.add_generation_prompt;
  if (present(cont) && typeof cont !== 'boolean')
    throw badRequest('continue_final_message must be a boolean', 'continue_final_message');
  if (present(addGen) && typeof addGen !== 'boolean')
    throw badRequest('add_generation_prompt must be a boolean', 'add_generation_prompt');
  if (cont === true && addGen === true)
    throw badRequest(
      'continue_final_message and add_generation_prompt cannot both be true',
      'continue_final_message',
    );
  if (addGen === false && cont !== true)
    throw badRequest(
      'add_generation_prompt: false is only supported with continue_final_message: true',
      'add_generation_prompt',
    );
  return cont === true ? { continueFinalMessage: true } : {};
}
