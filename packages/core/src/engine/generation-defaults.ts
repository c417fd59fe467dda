import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SwitchyardError } from '../errors.js';
import type { Checkpoint } from '../loader/checkpoint.js';
import type { SamplingParams } from '../sampling-params.js';

/**
 * Where a request's omitted sampling settings come from (vLLM's `--generation-config`):
 * - 'auto' (default): the checkpoint's generation_config.json (temperature, top_p, top_k, min_p,
 *   repetition_penalty, max_new_tokens), over Switchyard's defaults (greedy, the context left);
 * - 'vllm': vLLM's neutral defaults (temperature 1, no top-p/top-k), ignoring the file;
 * - 'none': Switchyard's defaults alone, ignoring the file;
 * - a folder: the generation_config.json in it, as 'auto' reads the checkpoint's.
 */
export type GenerationConfigSource = 'auto' | 'vllm' | 'none' | (string & {});

/** The generation_config.json keys vLLM takes as sampling defaults, with our names. */
const KEYS: [string, keyof SamplingParams][] = [
  ['temperature', 'temperature'],
  ['top_p', 'topP'],
  ['top_k', 'topK'],
  ['min_p', 'minP'],
  ['repetition_penalty', 'repetitionPenalty'],
  ['max_new_tokens', 'maxTokens'],
];

/** The sampling defaults a request's omitted settings take, for `source`. */
export function generationDefaults(
  source: GenerationConfigSource | undefined,
  checkpoint: Checkpoint,
): Partial<SamplingParams> {
  const mode = source ?? 'auto';
  if (mode === 'none') return {};
  if (mode === 'vllm') return { temperature: 1, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1 };
  let config: Record<string, unknown> = checkpoint.generationDefaults;
  if (mode !== 'auto') {
    const file = join(mode, 'generation_config.json');
    if (!existsSync(file)) {
      throw new SwitchyardError(
        `--generation-config ${mode}: no generation_config.json there; give auto, vllm, none or a folder holding one`,
        'invalid_request',
        'generationConfig',
      );
    }
    config = JSON.parse(readFileSync(file, 'utf8'));
  }
  const out: Record<string, number> = {};
  for (const [hf, ours] of KEYS) {
    const v = config[hf];
    if (typeof v === 'number' && Number.isFinite(v)) out[ours] = v;
  }
  return out as Partial<SamplingParams>;
}
