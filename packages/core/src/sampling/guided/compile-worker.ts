import { Worker } from 'node:worker_threads';
import type { GuidedSpec } from '../../sampling-params.js';
import { compileSpec } from './compile-spec.js';
import { xgrammarPath } from './load-xgrammar.js';
import type { TokenizerVocab } from './tokenizer-vocab.js';

/** Outcome of a trial compile: how long it took, or XGrammar's reason for rejecting the grammar. */
export type TrialResult = { ok: true; ms: number } | { ok: false; reason: string; timedOut?: boolean };

/**
 * The worker's program (run with `eval`, so it also works from vitest's TypeScript sources). It
 * loads XGrammar as CommonJS, routes `console.error` (where XGrammar prints its `[FATAL] …`
 * reasons before aborting) into a buffer, and compiles what it is sent.
 */
const workerSource = (compileSource: string) => `
const { parentPort, workerData } = require('node:worker_threads');
const { Module } = require('node:module');
const { readFileSync } = require('node:fs');
let captured = [];
console.error = console.warn = (...args) => { captured.push(args.join(' ')); };
const m = new Module(workerData.path);
m.filename = workerData.path;
m.paths = Module._nodeModulePaths(workerData.path);
m._compile(readFileSync(workerData.path, 'utf8'), workerData.path);
const xg = m.exports;
const compileSpec = ${compileSource};
const v = workerData.vocab;
const ready = xg.TokenizerInfo.createTokenizerInfo(v.encodedVocab, v.vocabType, v.prependSpace, v.vocabSize, v.stopIds)
  .then((info) => xg.GrammarCompiler.createGrammarCompiler(info, false));
parentPort.on('message', async ({ id, spec }) => {
  captured = [];
  try {
    const compiler = await ready;
    const t0 = performance.now();
    const g = await compileSpec(xg, compiler, spec);
    const ms = performance.now() - t0;
    g.dispose();
    parentPort.postMessage({ id, ok: true, ms });
  } catch (e) {
    parentPort.postMessage({ id, ok: false, reason: captured.join('\\n') || String(e && e.message || e), aborted: true });
  }
});
`;

/** XGrammar's `[FATAL] /path/file.cc:552: EBNF parser error at …` → `EBNF parser error at …`. */
export function grammarErrorReason(stderr: string): string {
  const fatal = stderr
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l.startsWith('[FATAL]') || l.includes('Check failed'));
  const line = fatal ?? stderr.split('\n').find((l) => l.trim() && !l.startsWith('Aborted')) ?? stderr;
  return line
    .replace(/^\[FATAL\]\s*/, '')
    .replace(/^\S+\.(cc|h|cpp):\d+:\s*/, '')
    .replace(/^Check failed: \(.*?\) is false:\s*/, '')
    .replace(/Aborted\(\).*$/, '')
    .trim();
}

/**
 * A worker thread that compiles grammars on trial, so that a grammar XGrammar cannot compile
 * (its wasm aborts, leaving the instance unusable) or one that takes too long never touches the
 * engine's own XGrammar instance. The worker is restarted after an abort or a timeout; jobs run
 * one at a time in arrival order.
 */
export class CompileWorker {
  private worker?: Worker;
  private nextId = 0;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly vocab: TokenizerVocab) {}

  /** Compiles `spec` in the worker within `timeoutMs`; never throws for a bad grammar. */
  trial(spec: GuidedSpec, timeoutMs: number): Promise<TrialResult> {
    const run = this.chain.then(() => this.run(spec, timeoutMs));
    this.chain = run.catch(() => {});
    return run;
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    await w?.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(workerSource(compileSpec.toString()), {
      eval: true,
      workerData: { path: xgrammarPath(), vocab: this.vocab },
      stderr: true,
      stdout: true,
    });
    w.unref();
    w.stderr.resume();
    w.stdout.resume();
    this.worker = w;
    return w;
  }

  private run(spec: GuidedSpec, timeoutMs: number): Promise<TrialResult> {
    const w = this.start();
    const id = this.nextId++;
    return new Promise<TrialResult>((resolve) => {
      const done = (r: TrialResult, restart: boolean) => {
        clearTimeout(timer);
        w.off('message', onMessage);
        w.off('error', onError);
        w.off('exit', onExit);
        if (restart) {
          if (this.worker === w) this.worker = undefined;
          void w.terminate();
        }
        resolve(r);
      };
      const onMessage = (m: { id: number; ok: boolean; ms: number; reason: string }) => {
        if (m.id !== id) return;
        if (m.ok) done({ ok: true, ms: m.ms }, false);
        else done({ ok: false, reason: grammarErrorReason(m.reason) }, true);
      };
      const onError = (e: Error) => done({ ok: false, reason: e.message }, true);
      const onExit = () => done({ ok: false, reason: 'the grammar compiler stopped' }, true);
      const timer = setTimeout(
        () =>
          done(
            {
              ok: false,
              timedOut: true,
              reason: `compiling it takes longer than ${timeoutMs} ms; simplify it (long bounded strings and {m,n} repetitions are costly at a large vocabulary)`,
            },
            true,
          ),
        timeoutMs,
      );
      w.on('message', onMessage);
      w.on('error', onError);
      w.on('exit', onExit);
      w.postMessage({ id, spec });
    });
  }
}
