import type { GenerateResult, StreamEvent } from '@switchyard/core';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { badRequest } from '../errors.js';
import { asBody, type Body, type ParsedLightllm, parseLightllm } from '../openai-requests.js';
import type { Meta, RouteContext } from '../route-context.js';

/** LightLLM's image mark: `<img></img>` stands where each image goes in `inputs`. */
const IMG = '<img></img>';

/** LightLLM's `POST /generate_stream` (its `/generate` shares SGLang's route, by body shape). */
export function registerLightllmRoutes(app: FastifyInstance, ctx: RouteContext): void {
  app.post('/generate_stream', async (req, reply) => {
    ctx.admit(req);
    return handleLightllm(ctx, asBody(req.body), reply, true);
  });
}

/**
 * Answers a LightLLM request: `<img></img>` marks become the model's image placeholder (the
 * engine expands it, e.g. InternVL's `<img>` + `<IMG_CONTEXT>` × N + `</img>`), images load under
 * the media policy, and the answer takes LightLLM's shape.
 */
export async function handleLightllm(ctx: RouteContext, body: Body, reply: FastifyReply, stream: boolean) {
  const parsed = parseLightllm(body, stream);
  const { engine } = ctx;
  if (parsed.images.length > ctx.maxImages)
    throw badRequest(
      `the request has ${parsed.images.length} images; at most ${ctx.maxImages} are accepted`,
      'multimodal_params',
    );
  const mm = engine.spec.multimodal;
  if (parsed.images.length > 0 && mm) {
    const placeholder = engine.tokenizer.idToToken(mm.placeholderTokenId);
    const prompt = parsed.request.prompt!;
    const marks = prompt.split(IMG).length - 1;
    if (marks > 0) {
      if (marks !== parsed.images.length)
        throw badRequest(
          `inputs has ${marks} ${IMG} marks but ${parsed.images.length} images were sent; put one mark where each image goes`,
          'inputs',
        );
      parsed.request.prompt = prompt.split(IMG).join(placeholder);
    } else if (!placeholder || !prompt.includes(placeholder)) {
      throw badRequest(`put ${IMG} in inputs where each image goes (${parsed.images.length} sent)`, 'inputs');
    }
  }
  return ctx.respond(
    reply,
    { requests: [parsed.request], images: [parsed.images], param: 'multimodal_params' },
    parsed.stream,
    (events, meta) => lightllmStream(events, meta),
    (r, meta) => lightllmResponse(r, meta, parsed),
    { route: stream ? '/generate_stream' : '/generate', framing: { prefix: 'data:', done: false } },
  );
}

/** LightLLM's finish reasons: 'stop', 'length' (an aborted request reads 'abort'). */
const reason = (r: string) => r;

function lightllmResponse(r: GenerateResult, meta: Meta, p: ParsedLightllm) {
  const out: Record<string, unknown> = {
    generated_text: r.outputs.map((o) => o.text),
    count_output_tokens: r.usage.completionTokens,
    finish_reason: reason(r.outputs[0].finishReason),
    prompt_tokens: r.usage.promptTokens,
  };
  if (p.returnDetails) {
    out.tokens = r.outputs[0].tokenIds.map((id) => ({
      id,
      text: meta.engine.tokenizer.decode([id], false),
      special: meta.engine.checkpoint.eosTokenIds.includes(id),
    }));
  }
  return out;
}

/** One event per generated token, as LightLLM's `/generate_stream` sends them. */
async function* lightllmStream(events: AsyncIterable<StreamEvent>, meta: Meta) {
  let count = 0;
  for await (const e of events) {
    if (e.type === 'done') return;
    count += e.tokenIds.length;
    const id = e.tokenIds[e.tokenIds.length - 1];
    yield {
      token: {
        id,
        text: e.text,
        logprob: e.logprobs?.[0]?.logprob ?? null,
        special: meta.engine.checkpoint.eosTokenIds.includes(id),
        count_output_tokens: count,
      },
      generated_text: null,
      finished: e.finishReason !== undefined,
      finish_reason: e.finishReason ? reason(e.finishReason) : null,
      details: null,
    };
  }
}
