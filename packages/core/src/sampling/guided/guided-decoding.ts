import type { CompiledGrammar, GrammarCompiler, TokenizerInfo } from '@mlc-ai/web-xgrammar';
import { SwitchyardError } from '../../errors.js';
import type { GuidedSpec } from '../../sampling-params.js';
import { compileSpec } from './compile-spec.js';
import { CompileWorker } from './compile-worker.js';
import { GuidedMatcher } from './guided-matcher.js';
import { loadXGrammar } from './load-xgrammar.js';
import type { TokenizerVocab } from './tokenizer-vocab.js';

export interface GuidedDecodingOptions {
  /** A grammar whose trial compile takes longer is refused (400). Default 10 000 ms. */
  compileTimeoutMs?: number;
  /** Compiled grammars kept (LRU). Default 64. */
  cacheSize?: number;
}

/** How long grammar work took, for tests and docs/benchmarks.md. */
export interface GuidedCompileStats {
  compiles: number;
  cacheHits: number;
  /** Trial compile in the worker, and the compile on the engine's thread, of the last miss (ms). */
  lastTrialMs: number;
  lastCompileMs: number;
}

/** The cache key of a spec (its `param` names the source and does not change the grammar). */
export function guidedSpecKey(spec: GuidedSpec): string {
  const { param: _param, ...rest } = spec;
  return JSON.stringify(rest);
}

/**
 * Grammar-constrained decoding for one tokenizer: compiles specs (trial in a worker first, then
 * on this thread, cached LRU by tokenizer + spec) and makes per-sequence matchers.
 *
 * Why two compiles: XGrammar's wasm cannot hand a compiled grammar to another thread, and a bad
 * grammar aborts the wasm instance (the reason goes to stderr only). The worker absorbs the
 * aborts and the time limit; only grammars it compiled reach the engine's instance, where the
 * masks are computed in the step loop without a thread hop (5–26 µs at 152k tokens).
 */
export class GuidedDecoding {
  private readonly cache = new Map<string, CompiledGrammar>();
  private readonly inflight = new Map<string, Promise<CompiledGrammar>>();
  private readonly worker: CompileWorker;
  readonly stats: GuidedCompileStats = { compiles: 0, cacheHits: 0, lastTrialMs: 0, lastCompileMs: 0 };

  private constructor(
    readonly vocab: TokenizerVocab,
    private readonly info: TokenizerInfo,
    private readonly compiler: GrammarCompiler,
    private readonly options: Required<GuidedDecodingOptions>,
  ) {
    this.worker = new CompileWorker(vocab);
  }

  static async create(vocab: TokenizerVocab, options: GuidedDecodingOptions = {}): Promise<GuidedDecoding> {
    const xg = loadXGrammar();
    const info = await xg.TokenizerInfo.createTokenizerInfo(
      vocab.encodedVocab,
      vocab.vocabType,
      vocab.prependSpace,
      vocab.vocabSize,
      vocab.stopIds,
    );
    const compiler = await xg.GrammarCompiler.createGrammarCompiler(info, true);
    return new GuidedDecoding(vocab, info, compiler, {
      compileTimeoutMs: options.compileTimeoutMs ?? 10_000,
      cacheSize: options.cacheSize ?? 64,
    });
  }

  /** The compiled grammar of `spec`; a grammar XGrammar rejects is a SwitchyardError naming why. */
  async compile(spec: GuidedSpec): Promise<CompiledGrammar> {
    const key = guidedSpecKey(spec);
    const hit = this.cache.get(key);
    if (hit) {
      this.cache.delete(key);
      this.cache.set(key, hit);
      this.stats.cacheHits++;
      return hit;
    }
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = this.compileMiss(key, spec).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return pending;
  }

  /** A fresh matcher at the grammar's start; `stopIds` end the output where the grammar may end. */
  async matcher(grammar: CompiledGrammar, stopIds: readonly number[]): Promise<GuidedMatcher> {
    const xg = loadXGrammar();
    const stops = [...new Set(stopIds)];
    const m = await xg.GrammarMatcher.createGrammarMatcher(grammar, stops.length ? stops : undefined);
    return new GuidedMatcher(m, this.vocab.vocabSize);
  }

  async close(): Promise<void> {
    await this.worker.close();
    for (const g of this.cache.values()) g.dispose();
    this.cache.clear();
    this.compiler.dispose();
    this.info.dispose();
  }

  private async compileMiss(key: string, spec: GuidedSpec): Promise<CompiledGrammar> {
    const param = spec.param ?? 'guided';
    const trial = await this.worker.trial(spec, this.options.compileTimeoutMs);
    if (!trial.ok) {
      throw new SwitchyardError(
        `${param}: ${describe(spec)} cannot be used: ${trial.reason || 'XGrammar rejected it'}`,
        'invalid_request',
        param,
      );
    }
    this.stats.lastTrialMs = trial.ms;
    const t0 = performance.now();
    const compiled = await compileSpec(loadXGrammar(), this.compiler, spec);
    this.stats.lastCompileMs = performance.now() - t0;
    this.stats.compiles++;
    this.cache.set(key, compiled);
    while (this.cache.size > this.options.cacheSize) {
      const [oldKey, old] = this.cache.entries().next().value as [string, CompiledGrammar];
      this.cache.delete(oldKey);
      // A matcher holds its own reference to the compiled grammar inside XGrammar.
      old.dispose();
    }
    return compiled;
  }
}

function describe(spec: GuidedSpec): string {
  switch (spec.type) {
    case 'json_schema':
      return 'the JSON schema';
    case 'regex':
      return `the regular expression ${JSON.stringify(spec.pattern.slice(0, 80))}`;
    case 'grammar':
      return 'the grammar';
    case 'choice':
      return 'the choices';
    case 'structural_tag':
      return 'the structural tag';
    default:
      return 'the JSON grammar';
  }
}
