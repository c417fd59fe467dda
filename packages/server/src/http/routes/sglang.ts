import type { Engine, GenerateResult, StreamEvent, TokenLogprob } from '@switchyard/core';
import type { FastifyInstance } from 'fastify';
import { badRequest } from '../errors.js';
import { asBody, type Body, type ParsedNativeGenerate, parseNativeGenerate } from '../openai-requests.js';
import type { Meta, RouteContext } from '../route-context.js';
import { handleLightllm } from './lightllm.js';

/**
 * SGLang's native `POST /generate`. The same route answers LightLLM clients: a body with
 * `inputs` (LightLLM's shape) goes to the LightLLM handler, one with `text`/`input_ids` here.
 */
export function registerSglangRoutes(app: FastifyInstance, ctx: RouteContext): void {
  app.post('/generate', async (req, reply) => {
    ctx.admit(req);
    const body = asBody(req.body);
    if ('inputs' in body) return handleLightllm(ctx, body, reply, false);
    return handleSglang(ctx, body, reply);
  });
}

async function handleSglang(ctx: RouteContext, body: Body, reply: Parameters<RouteContext['respond']>[0]) {
  const parsed = parseNativeGenerate(body);
  const total = parsed.images.reduce((a, l) => a + l.length, 0);
  if (total > ctx.maxImages)
    throw badRequest(`the request has ${total} images; at most ${ctx.maxImages} are accepted`, 'image_data');
  return ctx.respond(
    reply,
    { requests: parsed.requests, images: parsed.images, param: 'image_data' },
    parsed.stream,
    (events, meta) => sglangStream(events, meta, parsed),
    (r, meta) => sglangResponse(r, meta, parsed),
    { route: '/generate' },
  );
}

/** SGLang's `[logprob, token id, text | null]` triples. */
function triples(engine: Engine, lps: (TokenLogprob | null)[], withText: boolean) {
  return lps.map((l) =>
    l ? [l.logprob, l.token, withText ? engine.tokenizer.decode([l.token], false) : null] : null,
  );
}

function logprobInfo(
  engine: Engine,
  r: GenerateResult | undefined,
  lps: TokenLogprob[] | undefined,
  p: ParsedNativeGenerate,
) {
  if (!p.returnLogprob) return {};
  const out = lps ?? [];
  const info: Record<string, unknown> = {
    output_token_logprobs: triples(engine, out, p.returnTextInLogprobs),
  };
  if (p.topLogprobsNum > 0)
    info.output_top_logprobs = out.map((l) =>
      triples(
        engine,
        l.top.map((t) => ({ ...t, top: [] })),
        p.returnTextInLogprobs,
      ),
    );
  if (r?.promptLogprobs) {
    info.input_token_logprobs = r.promptLogprobs.map((l, i) =>
      l
        ? [l.logprob, l.token, p.returnTextInLogprobs ? engine.tokenizer.decode([l.token], false) : null]
        : [null, r.promptTokenIds[i], null],
    );
  }
  return info;
}

/** SGLang's /generate answer: one object per completion; a list for a batch or n > 1. */
function sglangResponse(r: GenerateResult, meta: Meta, p: ParsedNativeGenerate) {
  const items = r.outputs.map((o) => {
    const own = meta.results[Math.floor(o.index / meta.n)] ?? r;
    return {
      text: o.text,
      output_ids: o.tokenIds,
      meta_info: {
        id: meta.id,
        prompt_tokens: own.usage.promptTokens,
        completion_tokens: o.tokenIds.length,
        cached_tokens: own.usage.cachedTokens,
        finish_reason:
          o.finishReason === 'stop' && o.stopReason !== undefined
            ? { type: 'stop', matched: o.stopReason }
            : { type: o.finishReason },
        e2e_latency: own.metrics.e2eMs / 1000,
        ...logprobInfo(meta.engine, own, o.logprobs, p),
      },
    };
  });
  return items.length === 1 && !p.batched ? items[0] : items;
}

/** SGLang streams the whole text so far in every event. */
async function* sglangStream(events: AsyncIterable<StreamEvent>, meta: Meta, p: ParsedNativeGenerate) {
  const text = new Map<number, string>();
  const ids = new Map<number, number[]>();
  const lps = new Map<number, TokenLogprob[]>();
  for await (const e of events) {
    if (e.type === 'done') return;
    text.set(e.index, (text.get(e.index) ?? '') + e.text);
    ids.set(e.index, [...(ids.get(e.index) ?? []), ...e.tokenIds]);
    lps.set(e.index, [...(lps.get(e.index) ?? []), ...(e.logprobs ?? [])]);
    yield {
      index: e.index,
      text: text.get(e.index),
      output_ids: ids.get(e.index),
      meta_info: {
        id: meta.id,
        completion_tokens: ids.get(e.index)!.length,
        finish_reason: e.finishReason ? { type: e.finishReason } : null,
        ...logprobInfo(meta.engine, undefined, lps.get(e.index), p),
      },
    };
  }
}
