import { type EngineOptions, SwitchyardError } from '@switchyard/core';

/** The flags that choose and size the engine, shared by generate, bench and serve. */
export const ENGINE_FLAGS = {
  model: { type: 'string' },
  scheduler: { type: 'string' },
  attention: { type: 'string' },
  device: { type: 'string' },
  dtype: { type: 'string' },
  policy: { type: 'string' },
  'max-num-seqs': { type: 'string' },
  'max-num-batched-tokens': { type: 'string' },
  'kv-cache-tokens': { type: 'string' },
  'block-size': { type: 'string' },
  'no-prefix-caching': { type: 'boolean' },
  'no-chunked-prefill': { type: 'boolean' },
  quantization: { type: 'string' },
  json: { type: 'boolean' },
} as const;

/** Engine options from the flags shared by generate, bench and serve. */
export function engineOptions(values: Record<string, unknown>): EngineOptions {
  const int = (name: string): number | undefined => {
    const v = values[name];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0)
      throw new SwitchyardError(`--${name} must be a positive integer, got '${v}'`);
    return n;
  };
  if (typeof values.model !== 'string')
    throw new SwitchyardError('--model DIR is required (a Hugging Face checkpoint folder)');
  return {
    model: values.model,
    scheduler: values.scheduler as string | undefined,
    attention: values.attention as string | undefined,
    device: values.device as EngineOptions['device'],
    dtype: values.dtype as EngineOptions['dtype'],
    policy: values.policy as string | undefined,
    maxNumSeqs: int('max-num-seqs'),
    maxNumBatchedTokens: int('max-num-batched-tokens'),
    kvCacheTokens: int('kv-cache-tokens'),
    blockSize: int('block-size'),
    enablePrefixCaching: values['no-prefix-caching'] ? false : undefined,
    enableChunkedPrefill: values['no-chunked-prefill'] ? false : undefined,
    quantization: values.quantization as EngineOptions['quantization'],
  };
}
