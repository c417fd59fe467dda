import { type ParseArgsConfig, parseArgs } from 'node:util';
import { type EngineOptions, SwitchyardError } from '@switchyard/core';
import { resolveChatTemplate } from './chat-templates.js';

/** The flags that choose and size the engine, shared by generate, bench and serve. */
export const ENGINE_FLAGS = {
  model: { type: 'string' },
  tokenizer: { type: 'string' },
  'chat-template': { type: 'string' },
  scheduler: { type: 'string' },
  attention: { type: 'string' },
  device: { type: 'string' },
  dtype: { type: 'string' },
  policy: { type: 'string' },
  'max-model-len': { type: 'string' },
  'max-num-seqs': { type: 'string' },
  'max-num-batched-tokens': { type: 'string' },
  'kv-cache-tokens': { type: 'string' },
  'gpu-memory-utilization': { type: 'string' },
  'cuda-lib-dir': { type: 'string' },
  'int4-max-batch': { type: 'string' },
  'block-size': { type: 'string' },
  'no-prefix-caching': { type: 'boolean' },
  'enable-prefix-caching': { type: 'boolean' },
  'no-chunked-prefill': { type: 'boolean' },
  quantization: { type: 'string' },
  'generation-config': { type: 'string' },
  'image-cache-mb': { type: 'string' },
  'image-cache-entries': { type: 'string' },
  'vision-batch-size': { type: 'string' },
  json: { type: 'boolean' },
} as const;

/**
 * Other servers' spellings of our options (vLLM, SGLang, LightLLM), after `_` → `-`. Each maps
 * to the flag that does the same here.
 */
export const FLAG_ALIASES: Record<string, string> = {
  'model-path': 'model', // SGLang
  'model-dir': 'model', // LightLLM --model_dir
  'tokenizer-path': 'tokenizer', // SGLang
  'tokenizer-dir': 'tokenizer',
  'context-length': 'max-model-len', // SGLang
  'max-req-total-len': 'max-model-len', // LightLLM
  'max-running-requests': 'max-num-seqs', // SGLang
  'running-max-req-size': 'max-num-seqs', // LightLLM
  'chunked-prefill-size': 'max-num-batched-tokens', // SGLang
  'batch-max-tokens': 'max-num-batched-tokens', // LightLLM
  'max-total-tokens': 'kv-cache-tokens', // SGLang
  'max-total-token-num': 'kv-cache-tokens', // LightLLM
  'mem-fraction-static': 'gpu-memory-utilization', // SGLang
  'mem-fraction': 'gpu-memory-utilization', // LightLLM
  'cache-capacity': 'image-cache-entries', // LightLLM: images kept in the embedding cache
  'visual-infer-batch-size': 'vision-batch-size', // LightLLM: images per vision tower run
  'disable-radix-cache': 'no-prefix-caching', // SGLang
  'schedule-policy': 'policy', // SGLang
  'disable-log-requests': 'no-log-requests', // vLLM
};

/** Options other servers have and Switchyard does not: refused, saying what to do instead. */
export const UNSUPPORTED_FLAGS: Record<string, string> = {
  'tensor-parallel-size': 'Switchyard runs a model on one device; drop it',
  tp: 'Switchyard runs a model on one device; drop it',
  'tp-size': 'Switchyard runs a model on one device; drop it',
  'pipeline-parallel-size': 'Switchyard runs a model on one device; drop it',
  'data-parallel-size': 'run one server per device behind a load balancer',
  dp: 'run one server per device behind a load balancer',
  'trust-remote-code':
    'no remote code runs here: the architectures are built in (Llama, Qwen2/3, LLaVA, LLaVA-NeXT, InternVL); drop it',
  'kv-cache-dtype': 'the KV cache takes the model dtype (--dtype)',
  'load-format': 'checkpoints load from safetensors; give a local folder with --model',
  'download-dir': 'nothing is downloaded; give a local checkpoint folder with --model',
  revision: 'nothing is downloaded; give a local checkpoint folder with --model',
  'enforce-eager': 'there are no CUDA graphs to turn off; drop it',
  'enable-lora': 'LoRA adapters are not supported',
  'lora-modules': 'LoRA adapters are not supported',
  'speculative-model': 'speculative decoding is not supported',
  'speculative-config': 'speculative decoding is not supported',
  'swap-space': 'preempted sequences are recomputed, never swapped',
  'cpu-offload-gb': 'weights stay on the device; drop it',
  'tokenizer-mode': 'only fast tokenizers (tokenizer.json) are read; drop it',
};

/** vLLM's dtype names, and 'auto' (the device's one dtype). */
const DTYPES: Record<string, EngineOptions['dtype'] | 'auto'> = {
  auto: 'auto',
  float32: 'float32',
  float: 'float32',
  fp32: 'float32',
  float16: 'float16',
  half: 'float16',
  fp16: 'float16',
  bfloat16: 'bfloat16',
  bf16: 'bfloat16',
};

/**
 * Rewrites other servers' spellings to ours (`--model_dir` → `--model`, `--model-path=X` →
 * `--model=X`), and refuses options Switchyard does not have with what to use instead.
 */
export function normalizeArgs(args: string[], known: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--' || !arg.startsWith('--')) {
      out.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const raw = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    const value = eq < 0 ? '' : arg.slice(eq);
    let name = raw.replaceAll('_', '-');
    name = FLAG_ALIASES[name] ?? name;
    if (!(name in known) && UNSUPPORTED_FLAGS[name]) {
      throw new SwitchyardError(`--${raw} is not supported: ${UNSUPPORTED_FLAGS[name]}`);
    }
    out.push(`--${name}${value}`);
  }
  return out;
}

/**
 * parseArgs over normalized flags; a lone positional argument is the model folder (as
 * `vllm serve MODEL`).
 */
export function parseFlags<T extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: T,
): ReturnType<typeof parseArgs<{ options: T; allowPositionals: true; strict: true }>>['values'] {
  const { values, positionals } = parseArgs({
    args: normalizeArgs(args, options),
    options,
    allowPositionals: true,
    strict: true,
  });
  const v = values as Record<string, unknown>;
  if (positionals.length > 1)
    throw new SwitchyardError(`one model folder at most, got ${positionals.map((p) => `'${p}'`).join(' ')}`);
  if (positionals.length === 1) {
    if (v.model !== undefined && v.model !== positionals[0])
      throw new SwitchyardError(`the model is given twice: '${positionals[0]}' and --model '${v.model}'`);
    v.model = positionals[0];
  }
  return values;
}

/** Engine options from the flags shared by generate, bench and serve. */
export function engineOptions(values: Record<string, unknown>): EngineOptions {
  const int = (name: string, min = 1): number | undefined => {
    const v = values[name];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min)
      throw new SwitchyardError(`--${name} must be an integer ≥ ${min}, got '${v}'`);
    return n;
  };
  if (typeof values.model !== 'string')
    throw new SwitchyardError('--model DIR is required (a Hugging Face checkpoint folder)');
  let dtype: EngineOptions['dtype'];
  if (values.dtype !== undefined) {
    const d = DTYPES[String(values.dtype)];
    if (!d)
      throw new SwitchyardError(
        `--dtype ${values.dtype} is not supported; use auto, float32 (cpu), float16 (webgpu, cuda) or bfloat16 (cuda)`,
      );
    dtype = d === 'auto' ? undefined : d;
  }
  let fraction: number | undefined;
  if (values['gpu-memory-utilization'] !== undefined) {
    fraction = Number(values['gpu-memory-utilization']);
    if (!(fraction > 0 && fraction <= 1))
      throw new SwitchyardError(
        `--gpu-memory-utilization must be a fraction in (0, 1], got '${values['gpu-memory-utilization']}'`,
      );
  }
  return {
    model: values.model,
    tokenizer: values.tokenizer as string | undefined,
    chatTemplate:
      values['chat-template'] === undefined
        ? undefined
        : resolveChatTemplate(String(values['chat-template'])),
    scheduler: values.scheduler as string | undefined,
    attention: values.attention as string | undefined,
    device: values.device as EngineOptions['device'],
    dtype,
    policy: values.policy as string | undefined,
    maxModelLen: int('max-model-len'),
    maxNumSeqs: int('max-num-seqs'),
    maxNumBatchedTokens: int('max-num-batched-tokens'),
    kvCacheTokens: int('kv-cache-tokens'),
    memoryUtilization: fraction,
    blockSize: int('block-size'),
    enablePrefixCaching: values['no-prefix-caching']
      ? false
      : values['enable-prefix-caching']
        ? true
        : undefined,
    enableChunkedPrefill: values['no-chunked-prefill'] ? false : undefined,
    quantization: values.quantization as EngineOptions['quantization'],
    generationConfig: values['generation-config'] as string | undefined,
    imageCacheMb: int('image-cache-mb', 0),
    imageCacheEntries: int('image-cache-entries', 0),
    visionBatchSize: int('vision-batch-size', 0),
    ...cudaSettings(values),
  };
}

/**
 * `--cuda-lib-dir` and `--int4-max-batch` are settings of the cuda backend: refused with any other
 * device (and the latter without `--quantization int4`).
 */
function cudaSettings(values: Record<string, unknown>): Pick<EngineOptions, 'settings'> {
  const settings: Record<string, unknown> = {};
  for (const flag of ['cuda-lib-dir', 'int4-max-batch']) {
    if (values[flag] !== undefined && values.device !== 'cuda')
      throw new SwitchyardError(`--${flag} is a setting of --device cuda; add --device cuda or drop it`);
  }
  if (values['cuda-lib-dir'] !== undefined) settings.cudaLibDir = String(values['cuda-lib-dir']);
  const int4 = values['int4-max-batch'];
  if (int4 !== undefined) {
    if (values.quantization !== 'int4')
      throw new SwitchyardError(`--int4-max-batch applies to --quantization int4; add it or drop the flag`);
    const n = Number(int4);
    if (int4 !== 'all' && !(Number.isInteger(n) && n >= 1))
      throw new SwitchyardError(
        `--int4-max-batch takes a number of sequences (1 or more) or 'all', got '${int4}'`,
      );
    settings.int4MaxBatch = int4 === 'all' ? 'all' : n;
  }
  return Object.keys(settings).length ? { settings } : {};
}
