import type { Engine, GenerateRequest } from '@switchyard/core';
import type { FrontendBackend, FrontendCall, FrontendResult } from './backend.js';

/** Runs a program's generations on an engine in this process. */
export class EngineBackend implements FrontendBackend {
  constructor(readonly engine: Engine) {}

  async generate(call: FrontendCall, onText?: (delta: string) => void): Promise<FrontendResult> {
    const request: GenerateRequest = {
      messages: call.messages,
      continueFinalMessage: call.continueFinal,
      ...(call.images.length ? { images: call.images } : {}),
      sampling: {
        maxTokens: call.maxTokens,
        temperature: call.temperature ?? 0,
        stop: call.stop,
        guided: call.guided,
        seed: call.seed,
        ...(call.logprobs ? { logprobs: 0 } : {}),
      },
    };
    let result: Awaited<ReturnType<Engine['generate']>>[number] | undefined;
    for await (const e of this.engine.stream(request)) {
      if (e.type === 'delta') onText?.(e.text);
      else result = e.result;
    }
    const out = result!.outputs[0];
    const decode = (id: number) => this.engine.tokenizer.decode([id], true);
    return {
      text: out.text,
      tokenLogprobs: out.logprobs?.map((l) => ({ text: decode(l.token), logprob: l.logprob })),
      promptTokens: result!.usage.promptTokens,
      cachedTokens: result!.usage.cachedTokens,
      completionTokens: result!.usage.completionTokens,
    };
  }
}
