import { SwitchyardError } from '../errors.js';
import type { ImagePipeline } from '../image/image-pipeline.js';
import { imageHash } from '../image/index.js';
import type { Checkpoint } from '../loader/checkpoint.js';
import { OFF_THREAD_CHARS, TokenizerThread } from '../loader/tokenizer-thread.js';
import type { ModelSpec } from '../model.js';
import { validateSamplingParams } from '../sampling/validate.js';
import type { SamplingParams } from '../sampling-params.js';
import type { MultimodalItem } from '../sequence.js';
import type { VisionRunner } from '../vision-runner.js';
import { chatPromptText, chatSpecialTokens, imageTokenExtra, messageChars } from './chat-prompt.js';
import { checkRequestKeys } from './check-request-keys.js';
import type { ImageEmbeddingCache } from './image-cache.js';
import { collectImages, expandPlaceholders, imageBytes, refuseImageTokens } from './multimodal-input.js';
import type { GenerateRequest } from './request.js';

/** A request turned into what the engine runs: prompt ids, images in place, checked sampling. */
export interface ProcessedInput {
  promptIds: number[];
  mm: MultimodalItem[];
  sampling: SamplingParams;
}

/**
 * The engine's front: renders chat messages, tokenizes (refusing first, from its length alone, a
 * text that cannot fit the context), decodes and preprocesses images within their budgets (the
 * `ImagePipeline`), expands their placeholders and gets their embeddings (through the image
 * cache), checks the ids against the vocabulary and the context, and validates the sampling
 * parameters. Throws a `SwitchyardError` naming what is wrong; touches no engine state. Aborting
 * the signal stops it between stages (and the pipeline's waits). Owns the tokenizer thread that
 * long texts are encoded on (`encode`; `close` ends it).
 */
export class InputProcessor {
  private readonly tokenizerThread: TokenizerThread;

  constructor(
    private readonly checkpoint: Checkpoint,
    private readonly spec: ModelSpec,
    private readonly limits: { vocabSize: number; maxModelLen: number },
    private readonly imageCache: ImageEmbeddingCache,
    private readonly vision?: VisionRunner,
    private readonly images?: ImagePipeline,
    /** What omitted sampling settings become (see `GenerationConfigSource`). */
    readonly samplingDefaults: Partial<SamplingParams> = {},
  ) {
    this.tokenizerThread = new TokenizerThread(checkpoint.dir);
  }

  /**
   * Refuses, without tokenizing, a text of `chars` UTF-16 units that cannot fit the context: each
   * token stands for at most `tokenizer.maxCharsPerToken` units, so such a text has at least
   * `chars / maxCharsPerToken` tokens. Texts under the bound are tokenized and checked exactly.
   */
  checkPromptChars(chars: number, param = 'prompt'): void {
    const per = this.checkpoint.tokenizer.maxCharsPerToken;
    const { maxModelLen } = this.limits;
    if (per === undefined || chars <= maxModelLen * per) return;
    throw new SwitchyardError(
      `the prompt is ${chars} characters long, at least ${Math.ceil(chars / per)} tokens, but the context holds ${maxModelLen}; shorten the prompt`,
      'invalid_request',
      param,
    );
  }

  /**
   * Token ids of `text`, as `tokenizer.encode` gives them; a long text is encoded on the tokenizer's
   * own thread, so this thread goes on answering and stepping meanwhile.
   */
  encode(text: string, addSpecialTokens = false): Promise<number[]> {
    const tokenizer = this.checkpoint.tokenizer;
    if (text.length < OFF_THREAD_CHARS) return Promise.resolve(tokenizer.encode(text, addSpecialTokens));
    return this.tokenizerThread.encode(text, addSpecialTokens);
  }

  /** Ends the tokenizer thread; later long texts are refused. */
  close(): Promise<void> {
    return this.tokenizerThread.close();
  }

  async process(req: GenerateRequest, signal?: AbortSignal): Promise<ProcessedInput> {
    if (!req || typeof req !== 'object')
      throw new SwitchyardError('a request must be an object', 'invalid_request');
    checkRequestKeys(req);
    const { promptIds, mm } = await this.promptWithImages(req, signal);
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
  async promptIds(req: GenerateRequest): Promise<number[]> {
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
    if (req.messages) {
      if (Array.isArray(req.messages)) this.checkPromptChars(messageChars(req.messages), 'messages');
      const text = chatPromptText(
        this.checkpoint,
        req.messages,
        { ...imageTokenExtra(this.checkpoint, this.spec), ...req.chatTemplateKwargs },
        req.continueFinalMessage,
      );
      this.checkPromptChars(text.length, 'messages');
      return this.encode(text, chatSpecialTokens(this.spec));
    }
    if (typeof req.prompt !== 'string')
      throw new SwitchyardError('prompt must be a string', 'invalid_request', 'prompt');
    this.checkPromptChars(req.prompt.length);
    return this.encode(req.prompt, true);
  }

  /** Prompt ids with image placeholders expanded, and the images' places and embeddings. */
  private async promptWithImages(
    req: GenerateRequest,
    signal?: AbortSignal,
  ): Promise<{ promptIds: number[]; mm: MultimodalItem[] }> {
    if (req.images !== undefined && !Array.isArray(req.images)) {
      throw new SwitchyardError('images must be an array', 'invalid_request', 'image');
    }
    const inputs = collectImages(req.messages, req.images);
    const spec = this.spec.multimodal;
    if (inputs.length === 0) {
      const promptIds = await this.promptIds(req);
      if (spec) refuseImageTokens(promptIds, spec, this.checkpoint.tokenizer, 0);
      return { promptIds, mm: [] };
    }
    if (!spec || !this.vision || !this.images) {
      throw new SwitchyardError(
        `the model ${this.spec.architecture} does not accept images`,
        'invalid_request',
        'image',
      );
    }
    const vision = this.vision;
    // The text first: a prompt too long or carrying stray image tokens is refused before any decoding.
    const textIds = await this.promptIds(req);
    refuseImageTokens(textIds, spec, this.checkpoint.tokenizer, inputs.length);
    const bytes = inputs.map(imageBytes);
    const processed = await this.images.process(bytes, signal);
    const decoded = processed.map((p, i) => ({ hash: imageHash(bytes[i]), processed: p }));
    const { ids, places } = expandPlaceholders(
      textIds,
      decoded.map((d) => d.processed),
      spec,
    );
    const mm = await Promise.all(
      decoded.map(async ({ hash, processed }, i) => {
        // The cache shares one encoding between requests; it is abandoned when all of them abort.
        const embeddings = await this.imageCache.get(
          hash,
          async (unwanted) => {
            const out = await vision.encode(processed.pixelValues, processed.shape, { signal: unwanted });
            return spec.arrange(out.data, out.shape, processed);
          },
          signal,
        );
        return { hash, ...places[i], embeddings };
      }),
    );
    signal?.throwIfAborted();
    return { promptIds: ids, mm };
  }
}
