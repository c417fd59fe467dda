import { execFileSync } from 'node:child_process';
import { SwitchyardError } from '../errors.js';

/** Device memory kept out of the KV pool for activations and the runtime, as vLLM leaves a margin. */
export const ACTIVATION_RESERVE_BYTES = 1024 ** 3;

/**
 * KV tokens that fit when the model may use `fraction` of the device's memory (vLLM's
 * --gpu-memory-utilization, SGLang's --mem-fraction-static): the fraction, less the weights and
 * a reserve for activations, divided by the KV bytes a token takes.
 */
export function kvTokensForMemoryFraction(o: {
  fraction: number;
  totalBytes: number;
  weightBytes: number;
  kvBytesPerToken: number;
}): number {
  if (!(o.fraction > 0 && o.fraction <= 1)) {
    throw new SwitchyardError(
      `the GPU memory fraction must be in (0, 1], got ${o.fraction}`,
      'invalid_request',
      'memoryUtilization',
    );
  }
  const budget = o.fraction * o.totalBytes - o.weightBytes - ACTIVATION_RESERVE_BYTES;
  const tokens = Math.floor(budget / o.kvBytesPerToken);
  if (tokens < 1) {
    const gib = (b: number) => (b / 1024 ** 3).toFixed(1);
    throw new SwitchyardError(
      `${o.fraction} of the device's ${gib(o.totalBytes)} GiB leaves no room for the KV cache after ${gib(o.weightBytes)} GiB of weights and a ${gib(ACTIVATION_RESERVE_BYTES)} GiB reserve; raise the fraction or set --kv-cache-tokens`,
      'invalid_request',
      'memoryUtilization',
    );
  }
  return tokens;
}

/**
 * Total memory of GPU 0 in bytes, from nvidia-smi (WebGPU itself does not report it); undefined
 * where nvidia-smi is absent.
 */
export function deviceMemoryBytes(): number | undefined {
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=memory.total', '--format=csv,noheader,nounits'], {
      encoding: 'utf8',
      timeout: 5000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const mib = Number(out.trim().split('\n')[0]);
    return Number.isFinite(mib) && mib > 0 ? mib * 1024 * 1024 : undefined;
  } catch {
    return undefined;
  }
}
