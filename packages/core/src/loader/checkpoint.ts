import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SwitchyardError } from '../errors.js';
import type { RopeSpec } from '../model.js';
import { ChatTemplate } from './chat-template.js';
import { indexSafetensors, type TensorEntry } from './safetensors.js';
import { TextTokenizer } from './tokenizer.js';

export type RawConfig = Record<string, unknown>;

/** What may replace a checkpoint's own files. */
export interface CheckpointOptions {
  /** A folder whose tokenizer.json / tokenizer_config.json (and chat template) are used instead. */
  tokenizer?: string;
  /** A Jinja chat template (the source text) used instead of the checkpoint's. */
  chatTemplate?: string;
}

/**
 * A Hugging Face checkpoint folder, read: config.json (transformers 4.x or 5.x style),
 * generation_config.json, the safetensors index, tokenizer and chat template. Model packages turn
 * it into a ModelSpec.
 */
export class Checkpoint {
  readonly config: RawConfig;
  readonly architecture: string;
  readonly tensors: Map<string, TensorEntry>;
  readonly tokenizer: TextTokenizer;
  readonly chatTemplate?: ChatTemplate;
  readonly eosTokenIds: number[];
  readonly bosTokenId?: number;
  readonly generationDefaults: RawConfig;

  private constructor(
    readonly dir: string,
    options: CheckpointOptions = {},
  ) {
    this.config = readJson(join(dir, 'config.json'), true);
    const archs = this.config.architectures;
    if (!Array.isArray(archs) || typeof archs[0] !== 'string') {
      throw new SwitchyardError(
        `config.json in ${dir} has no "architectures" list, so the model class is unknown; add e.g. "architectures": ["LlamaForCausalLM"]`,
        'model_load',
      );
    }
    this.architecture = archs[0];
    this.tensors = indexSafetensors(dir);
    const tokDir = options.tokenizer ? resolve(options.tokenizer) : dir;
    const tokenizerConfig = readJson(join(tokDir, 'tokenizer_config.json'), false);
    if (!existsSync(join(tokDir, 'tokenizer.json'))) {
      throw new SwitchyardError(
        `no tokenizer.json in ${tokDir}; Switchyard reads fast (tokenizer.json) tokenizers only`,
        'model_load',
      );
    }
    this.tokenizer = new TextTokenizer(readJson(join(tokDir, 'tokenizer.json'), true), tokenizerConfig);
    const template =
      options.chatTemplate ??
      (options.tokenizer ? findChatTemplate(tokDir, tokenizerConfig) : undefined) ??
      findChatTemplate(dir, tokenizerConfig);
    if (template) this.chatTemplate = new ChatTemplate(template, this.tokenizer.specialTokens);
    this.generationDefaults = readJson(join(dir, 'generation_config.json'), false);
    const text = this.textConfig;
    this.eosTokenIds = idList(
      this.generationDefaults.eos_token_id ?? text.eos_token_id ?? this.config.eos_token_id,
    );
    const bos = this.generationDefaults.bos_token_id ?? text.bos_token_id;
    if (typeof bos === 'number') this.bosTokenId = bos;
  }

  /** Opens a checkpoint folder; every problem is a SwitchyardError that names it. */
  static open(dir: string, options: CheckpointOptions = {}): Checkpoint {
    const abs = resolve(dir);
    if (!existsSync(abs) || !statSync(abs).isDirectory()) {
      throw new SwitchyardError(
        `model folder ${dir} does not exist (expected a Hugging Face checkpoint folder)`,
        'model_load',
      );
    }
    return new Checkpoint(abs, options);
  }

  /** The text model's config: `text_config` for VLMs, the root otherwise. */
  get textConfig(): RawConfig {
    return (this.config.text_config as RawConfig | undefined) ?? this.config;
  }

  /** The checkpoint's stored dtype, from `dtype` (5.x) or `torch_dtype` (4.x). */
  get dtype(): string | undefined {
    return (this.config.dtype ?? this.config.torch_dtype) as string | undefined;
  }

  tensor(name: string): TensorEntry {
    const t = this.tensors.get(name);
    if (!t)
      throw new SwitchyardError(`weight ${name} is missing from the checkpoint in ${this.dir}`, 'model_load');
    return t;
  }
}

/** A required number from a config, with a clear error when absent. */
export function configNumber(config: RawConfig, key: string, fallback?: number): number {
  const v = config[key];
  if (typeof v === 'number') return v;
  if (fallback !== undefined) return fallback;
  throw new SwitchyardError(`config.json has no numeric "${key}"`, 'model_load');
}

/** Rope settings from either `rope_parameters` (5.x) or `rope_theta` + `rope_scaling` (4.x). */
export function readRope(config: RawConfig): RopeSpec {
  const params = (config.rope_parameters ?? config.rope_scaling ?? {}) as RawConfig;
  const theta = (params.rope_theta ?? config.rope_theta ?? 10000) as number;
  const type = (params.rope_type ?? params.type ?? 'default') as string;
  const partial = (params.partial_rotary_factor ?? config.partial_rotary_factor) as number | undefined;
  if (type === 'default') return { theta, type: 'default', partialRotaryFactor: partial };
  if (type === 'llama3') {
    return {
      theta,
      type: 'llama3',
      factor: params.factor as number,
      lowFreqFactor: params.low_freq_factor as number,
      highFreqFactor: params.high_freq_factor as number,
      originalMaxPositionEmbeddings: params.original_max_position_embeddings as number,
      partialRotaryFactor: partial,
    };
  }
  throw new SwitchyardError(`rope type '${type}' is not supported; supported: default, llama3`, 'model_load');
}

function idList(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number');
  return [];
}

function readJson(path: string, required: boolean): RawConfig {
  if (!existsSync(path)) {
    if (required) throw new SwitchyardError(`${path} is missing`, 'model_load');
    return {};
  }
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new SwitchyardError(`${path} is not valid JSON: ${(e as Error).message}`, 'model_load');
  }
}

function findChatTemplate(dir: string, tokenizerConfig: RawConfig): string | undefined {
  const jinja = join(dir, 'chat_template.jinja');
  if (existsSync(jinja)) return readFileSync(jinja, 'utf8');
  const json = join(dir, 'chat_template.json');
  if (existsSync(json)) {
    const t = readJson(json, true).chat_template;
    if (typeof t === 'string') return t;
  }
  const t = tokenizerConfig.chat_template;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) return (t.find((x) => x.name === 'default') ?? t[0])?.template;
  return undefined;
}
