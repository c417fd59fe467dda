import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kvTokensForMemoryFraction } from '@switchyard/core';
import { fixture, fixtureTitle, repoRoot } from '@switchyard/core/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { BENCH_FLAGS } from './bench.js';
import { BUILTIN_CHAT_TEMPLATES } from './chat-templates.js';
import { DEMO_MODEL, DEMO_VISION_MODEL, GENERATE_FLAGS } from './cli.js';
import { createEngine } from './create-engine.js';
import {
  ENGINE_FLAGS,
  engineOptions,
  FLAG_ALIASES,
  normalizeArgs,
  parseFlags,
  UNSUPPORTED_FLAGS,
} from './flags.js';
import { HELP } from './help.js';
import { SERVE_FLAGS } from './serve.js';

const BIN = join(import.meta.dirname, '..', 'dist', 'bin.js');
const run = (...args: string[]) =>
  spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
const tmp = mkdtempSync(join(tmpdir(), 'switchyard-flags-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('launch flags in vLLM, SGLang and LightLLM spellings', () => {
  it('maps the other spellings to ours', () => {
    expect(
      normalizeArgs(
        [
          '--model-path',
          'm',
          '--model_dir=m',
          '--tokenizer-path',
          't',
          '--context-length',
          '9',
          '--cache_capacity',
          '3',
          '--mem-fraction-static',
          '0.8',
          '--max_total_token_num',
          '64',
          '--visual_infer_batch_size',
          '8',
        ],
        ENGINE_FLAGS,
      ),
    ).toEqual([
      '--model',
      'm',
      '--model=m',
      '--tokenizer',
      't',
      '--max-model-len',
      '9',
      '--image-cache-entries',
      '3',
      '--gpu-memory-utilization',
      '0.8',
      '--kv-cache-tokens',
      '64',
      '--vision-batch-size',
      '8',
    ]);
    const v = parseFlags(
      ['./m', '--dtype', 'auto', '--max_model_len', '64', '--cache_capacity', '2', '--image-cache-mb', '8'],
      ENGINE_FLAGS,
    );
    expect(engineOptions(v)).toMatchObject({
      model: './m',
      dtype: undefined,
      maxModelLen: 64,
      imageCacheEntries: 2,
      imageCacheMb: 8,
    });
    expect(engineOptions(parseFlags(['--model', 'm', '--dtype', 'half'], ENGINE_FLAGS)).dtype).toBe(
      'float16',
    );
  });

  it('refuses what Switchyard lacks, saying what to do instead', () => {
    expect(() => normalizeArgs(['--tensor-parallel-size', '2'], ENGINE_FLAGS)).toThrow(
      /--tensor-parallel-size is not supported: Switchyard runs a model on one device/,
    );
    expect(() => normalizeArgs(['--trust_remote_code'], ENGINE_FLAGS)).toThrow(
      /--trust_remote_code is not supported: no remote code/,
    );
    expect(() => engineOptions(parseFlags(['m', '--dtype', 'int8'], ENGINE_FLAGS))).toThrow(
      /--dtype int8 is not supported; use auto, float32 \(cpu\), float16 \(webgpu, cuda\) or bfloat16 \(cuda\)/,
    );
    expect(engineOptions(parseFlags(['m', '--dtype', 'bf16'], ENGINE_FLAGS)).dtype).toBe('bfloat16');
    expect(() => parseFlags(['a', 'b'], ENGINE_FLAGS)).toThrow(/one model folder at most/);
    expect(() => parseFlags(['a', '--model', 'b'], ENGINE_FLAGS)).toThrow(/the model is given twice/);
    expect(() => engineOptions(parseFlags(['m', '--chat-template', 'nope'], ENGINE_FLAGS))).toThrow(
      /neither a file nor a built-in template; built-in: chatml, vicuna_v1.1/,
    );
  });

  it('sizes the KV pool from a GPU memory fraction, and refuses it on cpu', async () => {
    const gib = 1024 ** 3;
    expect(
      kvTokensForMemoryFraction({
        fraction: 0.5,
        totalBytes: 10 * gib,
        weightBytes: 2 * gib,
        kvBytesPerToken: 1024,
      }),
    ).toBe((2 * gib) / 1024);
    expect(() =>
      kvTokensForMemoryFraction({
        fraction: 0.1,
        totalBytes: 10 * gib,
        weightBytes: 2 * gib,
        kvBytesPerToken: 1,
      }),
    ).toThrow(/leaves no room for the KV cache/);
    await expect(createEngine({ model: DEMO_MODEL, memoryUtilization: 0.9 })).rejects.toThrow(
      /the cpu backend has none; size the KV cache with --kv-cache-tokens N/,
    );
  });

  it('--image-cache-mb and --cache_capacity reach the engine', async () => {
    const engine = await createEngine(
      engineOptions(
        parseFlags([DEMO_VISION_MODEL, '--image-cache-mb', '3', '--cache_capacity', '1'], ENGINE_FLAGS),
      ),
    );
    try {
      expect(engine.imageCache.capacityBytes).toBe(3 * 1024 * 1024);
      expect(engine.imageCache.maxEntries).toBe(1);
      for (const scene of ['scene0.png', 'scene1.png']) {
        await engine.generate([
          {
            messages: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Hi' }] }],
            images: [join(DEMO_VISION_MODEL, 'examples', scene)],
            sampling: { maxTokens: 1 },
          },
        ]);
      }
      expect(engine.imageCache.size).toBe(1);
    } finally {
      await engine.close();
    }
  });

  it('--vision-batch-size and --visual_infer_batch_size reach the vision tower; a bad value is refused', async () => {
    const opts = (...a: string[]) => engineOptions(parseFlags([DEMO_VISION_MODEL, ...a], ENGINE_FLAGS));
    expect(opts('--visual_infer_batch_size', '4').visionBatchSize).toBe(4);
    expect(opts('--vision-batch-size', '0').visionBatchSize).toBe(0);
    expect(() => opts('--vision-batch-size=-1')).toThrow('--vision-batch-size must be an integer ≥ 0');
    expect(() => opts('--visual_infer_batch_size', 'many')).toThrow(/--vision-batch-size must be an integer/);
    const engine = await createEngine(opts('--visual_infer_batch_size', '4'));
    try {
      expect(engine.vision?.maxBatchTiles).toBe(4);
    } finally {
      await engine.close();
    }
    const byDefault = await createEngine(opts());
    try {
      expect(byDefault.vision?.maxBatchTiles).toBe(16);
    } finally {
      await byDefault.close();
    }
  });

  it('--tokenizer-path takes the tokenizer from another folder', () => {
    const dir = join(tmp, 'no-tokenizer');
    spawnSync('mkdir', [dir]);
    for (const f of readdirSync(DEMO_MODEL))
      if (!f.startsWith('tokenizer')) symlinkSync(join(DEMO_MODEL, f), join(dir, f));
    const missing = run('generate', dir, '--prompt', 'def f(x):', '--max-tokens', '4', '--json');
    expect(missing.stderr).toMatch(/no tokenizer.json in/);
    const a = run(
      'generate',
      dir,
      '--tokenizer-path',
      DEMO_MODEL,
      '--prompt',
      'def f(x):',
      '--max-tokens',
      '4',
      '--json',
    );
    const b = run(
      'generate',
      '--model-path',
      DEMO_MODEL,
      '--prompt',
      'def f(x):',
      '--max-tokens',
      '4',
      '--json',
    );
    expect(a.stderr).toBe('');
    expect(JSON.parse(a.stdout)).toEqual(JSON.parse(b.stdout));
  });

  it('every subcommand answers --help', () => {
    for (const cmd of Object.keys(HELP)) {
      const r = run(cmd, '--help');
      expect(r.status, cmd).toBe(0);
      expect(r.stdout).toBe(`${HELP[cmd]}\n`);
    }
  });

  it('a busy port fails at once, before the model loads', async () => {
    const holder = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
    const port = (holder.address() as { port: number }).port;
    try {
      const started = Date.now();
      const r = await new Promise<{ code: number | null; err: string }>((resolve) => {
        const child = spawn(process.execPath, [BIN, 'serve', '--port', String(port), '--model', DEMO_MODEL]);
        let err = '';
        child.stderr.on('data', (d) => {
          err += d;
        });
        child.on('close', (code) => resolve({ code, err }));
      });
      expect(r.code).toBe(1);
      expect(r.err).toBe(
        `switchyard: port ${port} on 127.0.0.1 is already in use; stop what holds it or pick another with --port\n`,
      );
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      holder.close();
    }
  });
});

const internvl = fixture('internvl-tiny');
describe.skipIf(internvl.missing !== undefined)(fixtureTitle(internvl, '--chat-template chatml'), () => {
  it("renders InternVL's prompt exactly, so the answer is transformers' own", async () => {
    const engine = await createEngine(
      engineOptions(parseFlags([internvl.dir, '--chat-template', 'chatml'], ENGINE_FLAGS)),
    );
    try {
      expect(engine.checkpoint.chatTemplate!.source).toBe(BUILTIN_CHAT_TEMPLATES.chatml);
      const c = internvl.reference().chat![0];
      const messages = [
        { role: 'system', content: 'You are a helpful assistant.' },
        ...(c.messages as never[]),
      ];
      const [r] = await engine.generate([
        {
          messages,
          images: c.images!.map((f) => join(internvl.dir, '..', 'images', f)),
          sampling: { maxTokens: c.generated_ids.length, ignoreEos: true },
        },
      ]);
      expect(r.promptTokenIds).toEqual(c.input_ids);
      expect(r.outputs[0].tokenIds).toEqual(c.generated_ids);
    } finally {
      await engine.close();
    }
  });
});

describe('--help, docs/CLI.md and the parsers agree', () => {
  const parsers: Record<string, Record<string, unknown>> = {
    generate: GENERATE_FLAGS,
    bench: BENCH_FLAGS,
    serve: SERVE_FLAGS,
    start: SERVE_FLAGS,
  };
  const flagsIn = (text: string) => [
    ...new Set([...text.matchAll(/--([a-z][a-z0-9_-]*)/g)].map((m) => m[1])),
  ];
  /** What a spelled flag becomes: ours, or the refusal's name. */
  const resolve = (flag: string) => {
    const name = flag.replaceAll('_', '-');
    return FLAG_ALIASES[name] ?? name;
  };

  it("every option a command's --help names is one that command parses", () => {
    for (const [cmd, known] of Object.entries(parsers)) {
      for (const flag of flagsIn(HELP[cmd])) {
        if (flag === 'help' || UNSUPPORTED_FLAGS[resolve(flag)]) continue;
        // `start` points at serve's help; generate's help names no other command's flags.
        expect(Object.keys(known), `${cmd} --help names --${flag}`).toContain(resolve(flag));
      }
    }
  });

  it('every option docs/CLI.md names is parsed by some command, mapped, or refused with a message', () => {
    const doc = readFileSync(join(repoRoot(import.meta.dirname), 'docs', 'CLI.md'), 'utf8');
    const all = new Set(Object.values(parsers).flatMap((p) => Object.keys(p)));
    for (const flag of flagsIn(doc)) {
      const name = resolve(flag);
      if (flag === 'help' || UNSUPPORTED_FLAGS[name]) continue;
      expect(all.has(name), `docs/CLI.md names --${flag}`).toBe(true);
    }
  });
});

describe('the cuda device on the command line', () => {
  it('passes --cuda-lib-dir to the cuda backend, and refuses it with another device', () => {
    const flags = (...a: string[]) => engineOptions(parseFlags(['--model', 'm', ...a], ENGINE_FLAGS));
    expect(flags('--device', 'cuda', '--cuda-lib-dir', '/opt/cuda/lib').settings).toEqual({
      cudaLibDir: '/opt/cuda/lib',
    });
    expect(() => flags('--cuda-lib-dir', '/opt/cuda/lib')).toThrow(
      '--cuda-lib-dir is a setting of --device cuda; add --device cuda or drop it',
    );
  });

  it('passes --int4-max-batch to the cuda backend with int4 weights, refusing it elsewhere', () => {
    const flags = (...a: string[]) => engineOptions(parseFlags(['--model', 'm', ...a], ENGINE_FLAGS));
    const cudaInt4 = ['--device', 'cuda', '--quantization', 'int4'];
    expect(flags(...cudaInt4, '--int4-max-batch', '8').settings).toEqual({ int4MaxBatch: 8 });
    expect(flags(...cudaInt4, '--int4-max-batch', 'all').settings).toEqual({ int4MaxBatch: 'all' });
    expect(() => flags(...cudaInt4, '--int4-max-batch', '0')).toThrow(
      "--int4-max-batch takes a number of sequences (1 or more) or 'all', got '0'",
    );
    expect(() => flags('--device', 'cuda', '--int4-max-batch', '8')).toThrow(
      '--int4-max-batch applies to --quantization int4; add it or drop the flag',
    );
    expect(() => flags('--quantization', 'int4', '--int4-max-batch', '8')).toThrow(
      '--int4-max-batch is a setting of --device cuda; add --device cuda or drop it',
    );
  });

  it('without the CUDA provider installed, names the command that installs it (one line)', () => {
    const empty = mkdtempSync(join(tmpdir(), 'no-ort-cuda-'));
    try {
      const r = spawnSync(
        process.execPath,
        [BIN, 'generate', '--model', DEMO_MODEL, '--prompt', 'hi', '--device', 'cuda'],
        { encoding: 'utf8', env: { ...process.env, SWITCHYARD_ORT_CUDA_DIR: empty } },
      );
      expect(r.status).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/libonnxruntime\.so, not found in .*run `switchyard setup cuda`/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('setup takes one target', () => {
    const r = spawnSync(process.execPath, [BIN, 'setup', 'gpu'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('switchyard: setup takes one target: `switchyard setup cuda`\n');
  });
});
