import { SwitchyardError } from '../errors.js';
import { decodeImage, imageHash } from '../image/index.js';
import type { Checkpoint } from '../loader/checkpoint.js';
import type { ModelSpec } from '../model.js';
import { validateSamplingParams } from '../sampling/validate.js';
import type { SamplingParams } from '../sampling-params.js';
import type { MultimodalItem } from '../sequence.js';
import type { VisionRunner } from '../vision-runner.js';
import { chatPromptIds } from './chat-prompt.js';
import { checkRequestKeys } from './check-request-keys.js';
import type { ImageEmbeddingCache } from './image-cache.js';
import { collectImages, expandPlaceholders, imageBytes } from './multimodal-input.js';
import type { GenerateRequest } from './request.js';

/** A request turned into what the engine runs: prompt ids, images in place, checked sampling. */
export interface ProcessedInput {
  promptIds: number[];
  mm: MultimodalItem[];
  sampling: SamplingParams;
}

/**
 * The engine's front: renders chat messages, tokenizes, decodes and preprocesses images, expands
 * their placeholders and gets their embeddings (through the image cache), checks the ids against
 * the vocabulary and the context, and validates the sampling parameters. Throws a
 * `SwitchyardError` naming what is wrong; touches no engine state.
 */
export class InputProcessor {
  constructor(
    private readonly checkpoint: Checkpoint,
    private readonly spec: ModelSpec,
    private readonly limits: { vocabSize: number; maxModelLen: number },
    private readonly imageCache: ImageEmbeddingCache,
    private readonly vision?: VisionRunner,
    /** What omitted sampling settings become (see `GenerationConfigSource`). */
    readonly samplingDefaults: Partial<SamplingParams> = {},
  ) {}

  async process(req: GenerateRequest): Promise<ProcessedInput> {
    if (!req || typeof req !== 'object')
      throw new SwitchyardError('a request must be an object', 'invalid_request');
    checkRequestKeys(req);
    const { promptIds, mm } = await this.promptWithImages(req);
    const { vocabSize, maxModelLen } = this.limits;
    if (promptIds.length === 0) throw new SwitchyardError('the prompt is empty', 'invalid_request', 'prompt');
    const bad = promptIds.find((t) => !Number.isInteger(t) || t < 0 || t >= vocabSize);
    if (bad !== undefined) {
      throw new SwitchyardError(
        `prompt token id ${bad} is outside the vocabulary (0..${vocabSize - 1})`,
        'invalid_request',
        'prompt',
      );
    }
    if (promptIds.length >= maxModelLen) {
      throw new SwitchyardError(
        `the prompt has ${promptIds.length} tokens but the context holds ${maxModelLen} (prompt plus at least one new token); shorten the prompt`,
        'invalid_request',
        'prompt',
      );
    }
    const given = Object.fromEntries(
      Object.entries(req.sampling ?? {}).filter(([, v]) => v !== undefined && v !== null),
    );
    const defaults = this.samplingDefaults;
    const merged: Record<string, unknown> = { ...defaults, ...given };
    // A default max_tokens (generation_config's max_new_tokens) is capped by the room left, as in vLLM.
    if (given.maxTokens === undefined && defaults.maxTokens !== undefined)
      merged.maxTokens = Math.max(1, Math.min(defaults.maxTokens, maxModelLen - promptIds.length));
    const sampling = validateSamplingParams(merged, {
      maxModelLen,
      promptLen: promptIds.length,
      vocabSize,
    });
    return { promptIds, mm, sampling };
  }

  /** The request's prompt as token ids, before image placeholders are expanded. */
  promptIds(req: GenerateRequest): number[] {
    const given = [req.prompt, req.promptIds, req.messages].filter((x) => x !== undefined).length;
    if (given !== 1) {
      throw new SwitchyardError(
        'give exactly one of prompt, prompt token ids or messages',
        'invalid_request',
        'prompt',
      );
    }
    if (req.promptIds) {
      if (!Array.isArray(req.promptIds))
        throw new SwitchyardError(
          'prompt token ids must be an array of integers',
          'invalid_request',
          'prompt',
        );
      return [...req.promptIds];
    }
    if (req.messages) return chatPromptIds(this.checkpoint, this.spec, req.messages);
    if (typeof req.prompt !== 'string')
      throw new SwitchyardError('prompt must be a string', 'invalid_request', 'prompt');
    return this.checkpoint.tokenizer.encode(req.prompt, true);
  }

  /** Prompt ids with image placeholders expanded, and the images' places and embeddings. */
  private async promptWithImages(
    req: GenerateRequest,
  ): Promise<{ promptIds: number[]; mm: MultimodalItem[] }> {
    if (req.images !== undefined && !Array.isArray(req.images)) {
      throw new SwitchyardError('images must be an array', 'invalid_request', 'image');
    }
    const inputs = collectImages(req.messages, req.images);
    const spec = this.spec.multimodal;
    if (inputs.length === 0) return { promptIds: this.promptIds(req), mm: [] };
    if (!spec || !this.vision) {
      throw new SwitchyardError(
        `the model ${this.spec.architecture} does not accept images`,
        'invalid_request',
        'image',
      );
    }
    const vision = this.vision;
    const decoded = await Promise.all(
      inputs.map(async (input) => {
        const bytes = imageBytes(input);
        const processed = spec.process(await decodeImage(bytes));
        return { hash: imageHash(bytes), processed };
      }),
    );
    const { ids, places } = expandPlaceholders(
      this.promptIds(req),
      decoded.map((d) => d.processed),
      spec,
    );
    const mm = await Promise.all(
      decoded.map(async ({ hash, processed }, i) => {
        const embeddings = await this.imageCache.get(hash, async () => {
          const out = await vision.encode(processed.pixelValues, processed.shape);
          return spec.arrange(out.data, out.shape, processed);
        });
        return { hash, ...places[i], embeddings };
      }),
    );
    return { promptIds: ids, mm };
  }
}
