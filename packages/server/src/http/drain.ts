import type { Server as HttpServer } from 'node:http';
import type { Socket } from 'node:net';
import type { Engine } from '@switchyard/core';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { HttpError } from './errors.js';

/**
 * One request's cancellation: `signal` aborts when the client's connection closes before the
 * answer is complete (`clientGone`), or when a drain runs out of time (`signal.reason` is then the
 * 503 to report). Made as the handler starts, before any media is fetched or image decoded.
 */
export interface RequestScope {
  signal: AbortSignal;
  clientGone(): boolean;
  /** Stops tracking the request; the handler calls it once its answer is written. */
  end(): void;
}

/** The requests a server is answering, so that a drain can wait for them and then stop them. */
export class InFlight {
  private readonly active = new Set<AbortController>();
  /** HTTP requests whose headers have arrived and whose answer has not ended (any route). */
  private numRequests = 0;
  /** Connections on which no request has arrived yet (one may be on its way). */
  private readonly fresh = new Set<Socket>();

  get size(): number {
    return this.active.size;
  }

  /**
   * Whether any request is open or may be coming: tracked by a handler, still arriving (its body on
   * the way), or a new connection that has not sent one yet. Idle keep-alive connections do not count.
   */
  get busy(): boolean {
    return this.active.size > 0 || this.numRequests > 0 || this.fresh.size > 0;
  }

  /** Counts every request `server` receives until its response closes, and connections yet to send one. */
  watch(server: HttpServer): void {
    server.on('connection', (socket: Socket) => {
      this.fresh.add(socket);
      socket.once('close', () => this.fresh.delete(socket));
    });
    server.on('request', (req, res) => {
      this.fresh.delete(req.socket);
      this.numRequests++;
      res.once('close', () => this.numRequests--);
    });
  }

  /** Tracks a request from its handler's start; the client closing the connection aborts it. */
  open(reply: FastifyReply): RequestScope {
    const controller = new AbortController();
    let gone = false;
    const res = reply.raw;
    const onClose = () => {
      if (res.writableFinished) return;
      gone = true;
      controller.abort(new Error('the client closed the connection'));
    };
    res.on('close', onClose);
    this.active.add(controller);
    return {
      signal: controller.signal,
      clientGone: () => gone,
      end: () => {
        res.off('close', onClose);
        this.active.delete(controller);
      },
    };
  }

  /** Aborts every tracked request with `reason` (mutates: they end and untrack themselves). */
  abortAll(reason: HttpError): void {
    for (const c of this.active) c.abort(reason);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Ends a server within `timeoutMs` plus a short grace: running requests may finish until the
 * deadline (new ones get 503 meanwhile: the caller has set the admission to draining); then what is
 * left is aborted (streams end with an error event and `[DONE]`), every socket is closed — idle,
 * half-sent or streaming — and the engine is closed. Never waits on a client.
 */
export async function drainServer(
  app: FastifyInstance,
  engine: Engine,
  inFlight: InFlight,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((engine.numUnfinished() > 0 || inFlight.busy) && Date.now() < deadline) await sleep(20);
  if (inFlight.size > 0) {
    inFlight.abortAll(
      new HttpError(
        503,
        `the server shut down before the request finished (it waited --drain-timeout ${timeoutMs / 1000} s); retry on another instance`,
        'service_unavailable',
        null,
        'draining',
      ),
    );
    // Give the aborted handlers a moment to write their error event and [DONE].
    const grace = Date.now() + 500;
    while (inFlight.size > 0 && Date.now() < grace) await sleep(10);
  }
  // Stop listening, and close every connection: a keep-alive, a half-sent body, a stream.
  let closed = false;
  const closing = app.close().finally(() => {
    closed = true;
  });
  while (!closed) {
    app.server.closeAllConnections();
    await Promise.race([closing, sleep(50)]);
  }
  await engine.close();
}
