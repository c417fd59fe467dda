import type { ServerOptions as HttpServerOptions } from 'node:http';
import { SwitchyardError } from '@switchyard/core';

/** How long a client may take to send a request, and to keep an idle connection open. */
export interface Timeouts {
  /** Receiving the request headers (default 10 s; 0: no limit). */
  headersTimeoutMs: number;
  /** Receiving the whole request, headers and body (default 60 s; 0: no limit). The answer is not limited. */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this (default 5 s). */
  keepAliveTimeoutMs: number;
}

export const DEFAULT_TIMEOUTS: Timeouts = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5_000,
};

/**
 * Fastify's options for the timeouts. Node checks request and header deadlines on a timer
 * (`connectionsCheckingInterval`, 30 s by default); it runs often enough here that a slow client
 * is cut within a quarter of its limit past it.
 */
export function timeoutOptions(given: Partial<Timeouts> = {}): {
  requestTimeout: number;
  keepAliveTimeout: number;
  http: HttpServerOptions;
} {
  const t = { ...DEFAULT_TIMEOUTS };
  for (const [k, v] of Object.entries(given)) if (v !== undefined) t[k as keyof Timeouts] = v;
  for (const [name, v] of Object.entries(t)) {
    if (!Number.isFinite(v) || v < 0)
      throw new SwitchyardError(`${name} must be a number of ms ≥ 0, got ${v}`, 'invalid_request', name);
  }
  if (t.requestTimeoutMs > 0 && (t.headersTimeoutMs === 0 || t.headersTimeoutMs > t.requestTimeoutMs)) {
    // Node refuses a header deadline later than the request's: the headers are part of the request.
    t.headersTimeoutMs = t.requestTimeoutMs;
  }
  const limits = [t.headersTimeoutMs, t.requestTimeoutMs].filter((v) => v > 0);
  const interval = Math.max(100, Math.min(1000, Math.floor(Math.min(...limits, 4000) / 4)));
  return {
    requestTimeout: t.requestTimeoutMs,
    keepAliveTimeout: t.keepAliveTimeoutMs,
    http: { headersTimeout: t.headersTimeoutMs, connectionsCheckingInterval: interval },
  };
}
