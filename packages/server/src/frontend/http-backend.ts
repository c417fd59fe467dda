import type { ChatMessage } from '@switchyard/core';
import type { FrontendBackend, FrontendCall, FrontendResult } from './backend.js';

/**
 * Runs a program's generations on a Switchyard server through `/v1/chat/completions`: images as
 * data URLs, an unfinished assistant turn with `continue_final_message`, constraints with vLLM's
 * `guided_*` fields, text streamed over server-sent events.
 */
export class HttpBackend implements FrontendBackend {
  constructor(
    readonly baseUrl: string,
    private readonly options: { apiKey?: string; model?: string } = {},
  ) {}

  async generate(call: FrontendCall, onText?: (delta: string) => void): Promise<FrontendResult> {
    let image = 0;
    const messages = call.messages.map((m: ChatMessage) =>
      typeof m.content === 'string'
        ? m
        : {
            ...m,
            content: m.content.map((p) =>
              p.type === 'image'
                ? { type: 'image_url', image_url: { url: dataUrl(call.images[image++]) } }
                : p,
            ),
          },
    );
    const g = call.guided;
    const body: Record<string, unknown> = {
      ...(this.options.model ? { model: this.options.model } : {}),
      messages,
      max_tokens: call.maxTokens,
      temperature: call.temperature ?? 0,
      ...(call.stop?.length ? { stop: call.stop } : {}),
      ...(call.seed !== undefined ? { seed: call.seed } : {}),
      ...(call.continueFinal ? { continue_final_message: true, add_generation_prompt: false } : {}),
      ...(call.logprobs ? { logprobs: true, top_logprobs: 0 } : {}),
      ...(g?.type === 'regex' ? { guided_regex: g.pattern } : {}),
      ...(g?.type === 'choice' ? { guided_choice: g.choices } : {}),
      ...(g?.type === 'json_schema' ? { guided_json: g.schema } : {}),
      ...(g?.type === 'grammar' ? { guided_grammar: g.grammar } : {}),
      stream: onText !== undefined,
      ...(onText ? { stream_options: { include_usage: true } } : {}),
    };
    const res = await fetch(`${this.baseUrl.replace(/\/$/, '')}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(this.options.apiKey ? { authorization: `Bearer ${this.options.apiKey}` } : {}),
      },
      body: JSON.stringify(body),
    });
    if (!res.ok) {
      const err = (await res.json().catch(() => ({}))) as { error?: { message?: string } };
      throw new Error(`the server answered ${res.status}: ${err.error?.message ?? res.statusText}`);
    }
    if (!onText) return fromCompletion((await res.json()) as Parameters<typeof fromCompletion>[0]);
    return readStream(res, onText);
  }
}

function dataUrl(bytes: Uint8Array): string {
  return `data:image/png;base64,${Buffer.from(bytes).toString('base64')}`;
}

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  prompt_tokens_details?: { cached_tokens?: number };
}
type LogprobEntry = { token: string; logprob: number };

function fromCompletion(r: {
  choices: { message: { content: string | null }; logprobs?: { content?: LogprobEntry[] } | null }[];
  usage: Usage;
}): FrontendResult {
  const c = r.choices[0];
  return {
    text: c.message.content ?? '',
    tokenLogprobs: c.logprobs?.content?.map((l) => ({ text: l.token, logprob: l.logprob })),
    ...usageOf(r.usage),
  };
}

function usageOf(u: Usage) {
  return {
    promptTokens: u.prompt_tokens,
    completionTokens: u.completion_tokens,
    cachedTokens: u.prompt_tokens_details?.cached_tokens ?? 0,
  };
}

async function readStream(res: Response, onText: (delta: string) => void): Promise<FrontendResult> {
  const decoder = new TextDecoder();
  let buffer = '';
  let text = '';
  let usage: Usage | undefined;
  const logprobs: { text: string; logprob: number }[] = [];
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let i = buffer.indexOf('\n\n');
    while (i >= 0) {
      const line = buffer.slice(0, i).trim();
      buffer = buffer.slice(i + 2);
      i = buffer.indexOf('\n\n');
      if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
      const event = JSON.parse(line.slice(6));
      if (event.error) throw new Error(`the server failed mid-stream: ${event.error.message}`);
      if (event.usage) usage = event.usage;
      const choice = event.choices?.[0];
      const delta = choice?.delta?.content ?? '';
      if (delta) {
        text += delta;
        onText(delta);
      }
      for (const l of (choice?.logprobs?.content ?? []) as LogprobEntry[])
        logprobs.push({ text: l.token, logprob: l.logprob });
    }
  }
  if (!usage) throw new Error('the server stream ended without usage');
  return { text, tokenLogprobs: logprobs.length ? logprobs : undefined, ...usageOf(usage) };
}
