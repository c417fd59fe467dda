import { parseArgs } from 'node:util';
import { createContainer, SwitchyardError } from '@switchyard/core';
import { builtinsModule, createEngine, registerBuiltins } from './create-engine.js';

import { ENGINE_FLAGS, engineOptions } from './flags.js';
import { buildServer } from './http/app.js';

/**
 * `switchyard serve`: the HTTP server on --host:--port. SIGTERM or SIGINT drains: new requests
 * get 503, running ones finish (up to --drain-timeout seconds), what is left is stopped, every
 * connection closed, and the process exits 0.
 */
export async function serve(args: string[], defaultModel: string): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      ...ENGINE_FLAGS,
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '8000' },
      'api-key': { type: 'string' },
      'served-model-name': { type: 'string' },
      'max-waiting': { type: 'string', default: '1024' },
      'drain-timeout': { type: 'string', default: '30' },
      'allowed-media-domains': { type: 'string' },
      'allowed-local-media-path': { type: 'string' },
      'image-cache-mb': { type: 'string' },
      'max-images-per-request': { type: 'string', default: '8' },
      'no-playground': { type: 'boolean' },
      'max-image-pixels': { type: 'string' },
      'max-image-pixels-in-flight': { type: 'string' },
      'image-threads': { type: 'string' },
      'headers-timeout': { type: 'string' },
      'request-timeout': { type: 'string' },
      'keep-alive-timeout': { type: 'string' },
    },
  });
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
  const container = registerBuiltins(createContainer());
  const threads = optional('image-threads', 1);
  const engine = await createEngine({
    ...options,
    container,
    images: {
      maxPixelsPerRequest: optional('max-image-pixels', 1),
      maxPixelsInFlight: optional('max-image-pixels-in-flight', 1),
      maxWaiting: num('max-waiting', 1) * Math.max(1, num('max-images-per-request', 0)),
      // The container holds only the built-ins: the image threads register the same.
      workers: { model, modules: [builtinsModule()], ...(threads === undefined ? {} : { threads }) },
    },
  });
  const server = buildServer({
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
  const address = await server.app.listen({ host: values.host, port });
  process.stderr.write(
    `switchyard: serving ${server.modelName} on ${address} (${engine.info.scheduler} scheduler, ${engine.info.attention} KV cache, ${engine.info.device})\n`,
  );
  const drainMs = num('drain-timeout', 0) * 1000;
  return new Promise((resolve) => {
    const stop = (signal: string) => {
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
