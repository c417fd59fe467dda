import type { GenerateRequest, GenerateResult } from '@switchyard/core';
import type { FastifyBaseLogger } from 'fastify';

/** What one request's log line says (vLLM's request log, as one structured pino line). */
export interface RequestLogLine {
  id: string;
  route: string;
  prompt_tokens: number;
  completion_tokens: number;
  ttft_ms: number | null;
  e2e_ms: number;
  finish_reason: string | null;
  /** The prompts (text or token ids, never images); only with `--log-prompts`. */
  prompt?: unknown;
  error?: string;
}

/**
 * Writes the one log line a generation request gets when it ends: id, route, token counts, TTFT,
 * e2e and finish reason(s) at info; a failed one at warn with the error. Prompt text only when
 * `logPrompts` is set.
 */
export function logRequest(
  log: FastifyBaseLogger,
  o: {
    id: string;
    route: string;
    requests: GenerateRequest[];
    results: GenerateResult[];
    startedAt: number;
    logPrompts: boolean;
    error?: unknown;
  },
): void {
  const results = o.results.filter(Boolean);
  const reasons = [...new Set(results.flatMap((r) => r.outputs.map((x) => x.finishReason)))];
  const line: RequestLogLine = {
    id: o.id,
    route: o.route,
    prompt_tokens: results.reduce((a, r) => a + r.usage.promptTokens, 0),
    completion_tokens: results.reduce((a, r) => a + r.usage.completionTokens, 0),
    ttft_ms: results.length ? round(Math.max(...results.map((r) => r.metrics.ttftMs))) : null,
    e2e_ms: round(performance.now() - o.startedAt),
    finish_reason: reasons.length ? reasons.join(',') : o.error ? 'error' : 'abort',
  };
  if (o.logPrompts) line.prompt = o.requests.map((r) => r.prompt ?? r.promptIds ?? r.messages?.map(textOnly));
  if (o.error) {
    line.error = (o.error as Error).message;
    log.warn(line, 'request failed');
  } else log.info(line, 'request');
}

const round = (ms: number) => Math.round(ms * 10) / 10;

/** A chat message with its image parts reduced to a mark. */
function textOnly(m: NonNullable<GenerateRequest['messages']>[number]) {
  if (typeof m.content === 'string') return m;
  return { role: m.role, content: m.content.map((p) => (p.type === 'text' ? p : { type: p.type })) };
}
