import { postEvents } from './api';

/** Sampling settings as the form holds them: blank fields are left to the server's defaults. */
export interface Sampling {
  temperature: string;
  top_p: string;
  top_k: string;
  max_tokens: string;
  seed: string;
  /** One stop string per line. */
  stop: string;
  ignore_eos: boolean;
}

export const GREEDY: Sampling = {
  temperature: '0',
  top_p: '1',
  top_k: '',
  max_tokens: '128',
  seed: '',
  stop: '',
  ignore_eos: false,
};

/** A message as the chat keeps it: text and the pictures (data: URLs) attached to it. */
export interface Turn {
  role: 'user' | 'assistant';
  text: string;
  images: string[];
}

export interface AnswerStats {
  ttftMs: number;
  /** Output tokens per second after the first token. */
  tokensPerS: number | null;
  completionTokens: number;
  promptTokens: number;
  cachedTokens: number;
  finishReason: string | null;
}

/** The OpenAI body fields of the form; a field that is not a number is sent as typed, for the server to refuse. */
export function samplingBody(s: Sampling): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  const num = (k: keyof Sampling) => {
    const v = String(s[k]).trim();
    if (v !== '') body[k] = Number.isFinite(Number(v)) ? Number(v) : v;
  };
  for (const k of ['temperature', 'top_p', 'top_k', 'max_tokens', 'seed'] as const) num(k);
  const stop = s.stop.split('\n').filter((x) => x !== '');
  if (stop.length) body.stop = stop;
  if (s.ignore_eos) body.ignore_eos = true;
  return body;
}

export function chatMessages(turns: Turn[]) {
  return turns.map((t) =>
    t.role === 'assistant' || t.images.length === 0
      ? { role: t.role, content: t.text }
      : {
          role: t.role,
          content: [
            ...t.images.map((url) => ({ type: 'image_url', image_url: { url } })),
            { type: 'text', text: t.text },
          ],
        },
  );
}

interface Chunk {
  choices?: { delta?: { content?: string }; finish_reason?: string | null }[];
  usage?: {
    prompt_tokens: number;
    completion_tokens: number;
    prompt_tokens_details?: { cached_tokens?: number };
  };
}

/**
 * Streams one chat completion: `onText` gets the answer so far after each chunk. Resolves with
 * the answer's figures; rejects with the server's error, or an AbortError when `signal` fires.
 */
export async function streamChat(
  turns: Turn[],
  sampling: Sampling,
  signal: AbortSignal,
  onText: (text: string) => void,
): Promise<{ text: string; stats: AnswerStats }> {
  const start = performance.now();
  let first: number | undefined;
  let last = start;
  let text = '';
  let chunks = 0;
  let finishReason: string | null = null;
  let usage: Chunk['usage'];
  const body = {
    messages: chatMessages(turns),
    ...samplingBody(sampling),
    stream: true,
    stream_options: { include_usage: true },
  };
  for await (const c of postEvents<Chunk>('/v1/chat/completions', body, signal)) {
    if (c.usage) usage = c.usage;
    const choice = c.choices?.[0];
    if (!choice) continue;
    const now = performance.now();
    if (choice.delta?.content) {
      first ??= now;
      last = now;
      chunks++;
      text += choice.delta.content;
      onText(text);
    }
    if (choice.finish_reason) finishReason = choice.finish_reason;
  }
  const completionTokens = usage?.completion_tokens ?? chunks;
  return {
    text,
    stats: {
      ttftMs: (first ?? last) - start,
      tokensPerS:
        first !== undefined && last > first ? ((completionTokens - 1) * 1000) / (last - first) : null,
      completionTokens,
      promptTokens: usage?.prompt_tokens ?? 0,
      cachedTokens: usage?.prompt_tokens_details?.cached_tokens ?? 0,
      finishReason,
    },
  };
}

export function formatStats(s: AnswerStats): string {
  const parts = [
    `TTFT ${s.ttftMs.toFixed(0)} ms`,
    s.tokensPerS === null ? null : `${s.tokensPerS.toFixed(1)} tok/s`,
    `${s.completionTokens} tokens`,
    `${s.cachedTokens}/${s.promptTokens} prompt tokens cached`,
    s.finishReason ? `finish: ${s.finishReason}` : null,
  ];
  return parts.filter(Boolean).join(' · ');
}
