import { createServer } from 'node:net';
import { createContainer, SwitchyardError } from '@switchyard/core';
import { builtinsModule, createEngine, registerBuiltins } from './create-engine.js';
import { ENGINE_FLAGS, engineOptions, parseFlags } from './flags.js';
import { buildServer } from './http/app.js';
import { showLoadProgress } from './load-progress.js';
import { startStatsLogger } from './stats-logger.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** The options of `switchyard serve` (and `start`). */
export const SERVE_FLAGS = {
  ...ENGINE_FLAGS,
  host: { type: 'string', default: '127.0.0.1' },
  port: { type: 'string', default: '8000' },
  'api-key': { type: 'string' },
  'served-model-name': { type: 'string' },
  'max-waiting': { type: 'string', default: '1024' },
  'drain-timeout': { type: 'string', default: '30' },
  'allowed-media-domains': { type: 'string' },
  'allowed-local-media-path': { type: 'string' },
  'max-images-per-request': { type: 'string', default: '8' },
  'log-level': { type: 'string', default: 'info' },
  'log-prompts': { type: 'boolean' },
  'no-log-requests': { type: 'boolean' },
  'stats-interval': { type: 'string', default: '10' },
  'no-playground': { type: 'boolean' },
  'executor-thread': { type: 'boolean' },
  'no-executor-thread': { type: 'boolean' },
  'executor-isolation': { type: 'string' },
  'executor-max-restarts': { type: 'string' },
  'max-image-pixels': { type: 'string' },
  'max-image-pixels-in-flight': { type: 'string' },
  'image-threads': { type: 'string' },
  'headers-timeout': { type: 'string' },
  'request-timeout': { type: 'string' },
  'keep-alive-timeout': { type: 'string' },
} as const;

/**
 * `switchyard serve`: the HTTP server on --host:--port. SIGTERM or SIGINT drains: new requests
 * get 503, running ones finish (up to --drain-timeout seconds), what is left is stopped, every
 * connection closed, and the process exits 0.
 */
export async function serve(args: string[], defaultModel: string): Promise<number> {
  const values = parseFlags(args, SERVE_FLAGS);
  const level = values['log-level'].toLowerCase();
  if (!LOG_LEVELS.includes(level))
    throw new SwitchyardError(
      `--log-level must be one of ${LOG_LEVELS.join(', ')}, got '${values['log-level']}'`,
    );
  const num = (name: keyof typeof values, min: number): number => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < min)
      throw new SwitchyardError(`--${name} must be an integer ≥ ${min}, got '${values[name]}'`);
    return n;
  };
  const optional = (name: keyof typeof values, min: number) =>
    values[name] === undefined ? undefined : num(name, min);
  const seconds = (name: keyof typeof values) => {
    if (values[name] === undefined) return undefined;
    const n = Number(values[name]);
    if (!Number.isFinite(n) || n < 0)
      throw new SwitchyardError(`--${name} must be a number of seconds ≥ 0, got '${values[name]}'`);
    return n * 1000;
  };
  const port = num('port', 0);
  const model = values.model ?? defaultModel;
  const options = engineOptions({ ...values, model });
  // A busy port is reported now, not after the model has loaded.
  await checkPortFree(values.host, port);
  const container = registerBuiltins(createContainer());
  const threads = optional('image-threads', 1);
  const isolation = executorIsolation(values, options.device);
  const maxRestarts = optional('executor-max-restarts', 0);
  if (isolation === 'none' && maxRestarts !== undefined)
    throw new SwitchyardError(
      '--executor-max-restarts applies to an executor on a thread or in a process; add --executor-isolation process (or thread)',
    );
  const executorThread = isolation === 'none' ? undefined : { modules: [builtinsModule()], maxRestarts };
  const stopProgress = showLoadProgress(process.stderr);
  let engine: Awaited<ReturnType<typeof createEngine>>;
  try {
    engine = await createEngine({
      ...options,
      container,
      executorIsolation: isolation,
      executorThread,
      images: {
        maxPixelsPerRequest: optional('max-image-pixels', 1),
        maxPixelsInFlight: optional('max-image-pixels-in-flight', 1),
        maxWaiting: num('max-waiting', 1) * Math.max(1, num('max-images-per-request', 0)),
        // The container holds only the built-ins: the image threads register the same.
        workers: { model, modules: [builtinsModule()], ...(threads === undefined ? {} : { threads }) },
      },
    });
  } finally {
    stopProgress();
  }
  const server = buildServer({
    logger: { level, stream: process.stderr },
    logPrompts: values['log-prompts'] ?? false,
    logRequests: !values['no-log-requests'],
    engine,
    modelName: values['served-model-name'],
    apiKey: values['api-key'] ?? process.env.SWITCHYARD_API_KEY,
    maxWaiting: num('max-waiting', 1),
    maxImagesPerRequest: num('max-images-per-request', 0),
    media: {
      allowedDomains: (values['allowed-media-domains'] ?? '')
        .split(',')
        .map((d) => d.trim().toLowerCase())
        .filter(Boolean),
      allowedLocalPath: values['allowed-local-media-path'],
    },
    playground: values['no-playground'] ? undefined : { engineOptions: options, container },
    timeouts: {
      headersTimeoutMs: seconds('headers-timeout'),
      requestTimeoutMs: seconds('request-timeout'),
      keepAliveTimeoutMs: seconds('keep-alive-timeout'),
    },
  });
  let address: string;
  try {
    address = await server.app.listen({ host: values.host, port });
  } catch (e) {
    await engine.close();
    throw portError(e, values.host, port);
  }
  process.stderr.write(
    `switchyard: serving ${server.modelName} on ${address} (${engine.info.scheduler} scheduler, ${engine.info.attention} KV cache, ${engine.info.device})\n`,
  );
  const statsS = Number(values['stats-interval']);
  if (!(statsS >= 0))
    throw new SwitchyardError(`--stats-interval must be seconds ≥ 0, got '${values['stats-interval']}'`);
  const stopStats =
    statsS > 0 ? startStatsLogger(engine, (line) => server.app.log.info(line), statsS) : () => {};
  const drainMs = num('drain-timeout', 0) * 1000;
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      stopStats();
      process.stderr.write(`switchyard: ${signal}: draining (up to ${drainMs / 1000} s)\n`);
      server.drain(drainMs).then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

/** Binds host:port for a moment: a port in use fails here, before minutes of model loading. */
export function checkPortFree(host: string, port: number): Promise<void> {
  if (port === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (e) => reject(portError(e, host, port)));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}

function portError(e: unknown, host: string, port: number): Error {
  const code = (e as { code?: string }).code;
  if (code === 'EADDRINUSE')
    return new SwitchyardError(
      `port ${port} on ${host} is already in use; stop what holds it or pick another with --port`,
    );
  if (code === 'EACCES')
    return new SwitchyardError(
      `port ${port} on ${host} needs more privileges; pick a port above 1023 with --port`,
    );
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND')
    return new SwitchyardError(
      `cannot listen on ${host}: no such local address; use --host 127.0.0.1 or 0.0.0.0`,
    );
  return e as Error;
}

/**
 * Where the model's steps run: --executor-isolation, or --executor-thread / --no-executor-thread;
 * by default a thread on cuda (a long step would hold up /health and every stream otherwise;
 * decision 0008 measures the cost), this thread elsewhere. A process survives native crashes
 * (decision 0015).
 */
function executorIsolation(
  values: { 'executor-isolation'?: string; 'executor-thread'?: boolean; 'no-executor-thread'?: boolean },
  device: string | undefined,
): 'none' | 'thread' | 'process' {
  const named = values['executor-isolation'];
  if (named !== undefined && !['none', 'thread', 'process'].includes(named))
    throw new SwitchyardError(`--executor-isolation must be none, thread or process, got '${named}'`);
  const old = values['no-executor-thread'] ? 'none' : values['executor-thread'] ? 'thread' : undefined;
  if (named !== undefined && old !== undefined && named !== old)
    throw new SwitchyardError(
      `--executor-isolation ${named} contradicts --${old === 'none' ? 'no-' : ''}executor-thread; give one of them`,
    );
  return (named ?? old ?? (device === 'cuda' ? 'thread' : 'none')) as 'none' | 'thread' | 'process';
}
