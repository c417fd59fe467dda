import { createHash, timingSafeEqual } from 'node:crypto';
import type { Engine } from '@switchyard/core';
import type { FastifyRequest } from 'fastify';
import { HttpError } from './errors.js';

/** Seconds a client told 429 (queue full) or 503 (draining) is asked to wait before retrying. */
export const RETRY_AFTER_S = 1;

export interface AdmissionOptions {
  /** When set, requests need `Authorization: Bearer KEY` (scheme matched case-insensitively). */
  apiKey?: string;
  /**
   * Requests past which new ones get 429: sequences waiting in the scheduler, requests the engine
   * is preparing (tokenizing, decoding images) and requests still fetching their media.
   */
  maxWaiting: number;
}

/**
 * The server's front door: the API key, the drain state and the waiting room. A request holds a
 * seat from admission until the engine has it (`engine.stream` started): seats are counted with
 * the engine's waiting and preparing requests against `maxWaiting`, so image requests still
 * fetching or decoding count like queued ones.
 */
export class Admission {
  private readonly keyDigest?: Buffer;
  /** Admitted requests that have not reached the engine yet (fetching media). Mutated by `seat`. */
  private seated = 0;
  draining = false;

  constructor(
    private readonly engine: Engine,
    private readonly options: AdmissionOptions,
  ) {
    this.keyDigest = options.apiKey === undefined ? undefined : sha256(options.apiKey);
  }

  /** 401 unless the request carries the key; 503 while draining. */
  check(req: FastifyRequest, { auth = true } = {}): void {
    if (auth && this.keyDigest) {
      // RFC 7235: the auth scheme is case-insensitive; one or more spaces before the credentials.
      const m = /^bearer +(.*)$/i.exec(req.headers.authorization ?? '');
      if (!timingSafeEqual(sha256(m ? m[1] : ''), this.keyDigest)) {
        throw new HttpError(
          401,
          'missing or wrong API key: send Authorization: Bearer <key>',
          'authentication_error',
          null,
          'invalid_api_key',
        );
      }
    }
    if (this.draining) {
      throw new HttpError(
        503,
        'the server is shutting down; retry on another instance',
        'service_unavailable',
        null,
        'draining',
        { 'retry-after': String(RETRY_AFTER_S) },
      );
    }
  }

  /** Requests waiting for the engine: queued sequences, requests in `prepare`, seated requests. */
  numWaiting(): number {
    const s = this.engine.stats();
    return s.numWaiting + s.numPreparing + this.seated;
  }

  /**
   * Takes a seat in the waiting room or throws 429 (with Retry-After). Call the returned function
   * once the request has reached the engine, or failed before it; a second call does nothing.
   */
  seat(): () => void {
    const max = this.options.maxWaiting;
    if (this.numWaiting() >= max) {
      throw new HttpError(
        429,
        `the waiting queue is full (${max} requests waiting or preparing); retry later, or raise --max-waiting`,
        'rate_limit_error',
        null,
        'queue_full',
        { 'retry-after': String(RETRY_AFTER_S) },
      );
    }
    this.seated++;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.seated--;
    };
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
