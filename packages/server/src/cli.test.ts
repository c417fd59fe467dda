import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixture, fixtureTitle } from '@switchyard/core/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { DEMO_MODEL, DEMO_VISION_MODEL } from './cli.js';

const BIN = join(import.meta.dirname, '..', 'dist', 'bin.js');
const run = (...args: string[]) =>
  spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
const qwen = fixture('qwen2-tiny');
const tmp = mkdtempSync(join(tmpdir(), 'switchyard-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A copy of a fixture checkpoint with one file changed. */
function brokenCopy(name: string, change: (dir: string) => void): string {
  const dir = join(tmp, name);
  spawnSync('cp', ['-r', qwen.dir, dir]);
  for (const f of readdirSync(dir)) spawnSync('chmod', ['u+w', join(dir, f)]);
  change(dir);
  return dir;
}

function expectOneLineError(r: ReturnType<typeof run>, pattern: RegExp): void {
  expect(r.status).not.toBe(0);
  expect(r.stdout).toBe('');
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

describe('switchyard generate', () => {
  it('answers like transformers with the embedded demo model', () => {
    const ref = JSON.parse(readFileSync(join(DEMO_MODEL, 'demo_reference.json'), 'utf8'));
    const c = ref.chat.find(
      (x: { messages: { content: string }[] }) => x.messages[0].content === 'What does json.dumps do?',
    );
    const messages = join(tmp, 'demo.json');
    writeFileSync(messages, JSON.stringify(c.messages));
    const r = run('generate', '--model', DEMO_MODEL, '--messages', messages, '--max-tokens', '64', '--json');
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.token_ids).toEqual(c.generated_ids);
    expect(out.text).toBe(c.generated_text);
    expect(out.finish_reason).toBe('stop');
  });

  const visionRef = JSON.parse(readFileSync(join(DEMO_VISION_MODEL, 'demo_reference.json'), 'utf8'));
  it.each(visionRef.chat.map((c: { image: string }) => [c.image, c]))(
    'answers %s like transformers with the embedded vision demo (--messages, --image)',
    (_image, c: { image: string; messages: unknown[]; generated_ids: number[]; generated_text: string }) => {
      const messages = join(tmp, `vision-${c.image.replace(/\W/g, '_')}.json`);
      writeFileSync(messages, JSON.stringify(c.messages));
      const r = run(
        'generate',
        '--model',
        DEMO_VISION_MODEL,
        '--messages',
        messages,
        '--image',
        join(DEMO_VISION_MODEL, c.image),
        '--max-tokens',
        '24',
        '--json',
      );
      expect(r.stderr).toBe('');
      const out = JSON.parse(r.stdout);
      expect(out.token_ids).toEqual(c.generated_ids);
      // transformers' decode strips the SentencePiece word marker's space at the start; ours keeps
      // the answer's own leading space, as vLLM's incremental detokenizer does.
      expect(out.text.trimStart()).toBe(c.generated_text);
    },
    30_000,
  );

  it('prints nothing but one JSON object with the contract fields', () => {
    const r = run(
      'generate',
      '--model',
      DEMO_MODEL,
      '--prompt-ids',
      '0,55,281',
      '--max-tokens',
      '3',
      '--ignore-eos',
      '--json',
    );
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(Object.keys(out).sort()).toEqual(['finish_reason', 'prompt_token_ids', 'text', 'token_ids']);
    expect(out.prompt_token_ids).toEqual([0, 55, 281]);
    expect(out.token_ids).toHaveLength(3);
    expect(out.finish_reason).toBe('length');
  });

  describe.skipIf(qwen.missing)(fixtureTitle(qwen, 'with the qwen2-tiny fixture'), () => {
    it('runs --messages on a fixture and reports the prompt ids it saw', () => {
      const ref = qwen.reference().chat[0];
      const messages = join(tmp, 'm.json');
      writeFileSync(messages, JSON.stringify(ref.messages));
      const r = run(
        'generate',
        '--model',
        qwen.dir,
        '--messages',
        messages,
        '--max-tokens',
        '12',
        '--ignore-eos',
        '--json',
      );
      const out = JSON.parse(r.stdout);
      expect(out.prompt_token_ids).toEqual(ref.prompt_ids);
      expect(out.token_ids).toEqual(ref.generated_ids);
    });

    it.each([
      ['a missing folder', () => join(tmp, 'nope'), /does not exist/],
      [
        'a config without architectures',
        () =>
          brokenCopy('noarch', (d) => {
            const c = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
            delete c.architectures;
            writeFileSync(join(d, 'config.json'), JSON.stringify(c));
          }),
        /no "architectures"/,
      ],
      [
        'an unsupported architecture',
        () =>
          brokenCopy('unknown', (d) => {
            const c = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
            c.architectures = ['MambaForCausalLM'];
            writeFileSync(join(d, 'config.json'), JSON.stringify(c));
          }),
        /unknown model architecture 'MambaForCausalLM'; known: .*Qwen2ForCausalLM/,
      ],
      [
        'a truncated safetensors file',
        () => brokenCopy('trunc', (d) => truncateSync(join(d, 'model.safetensors'), 50_000)),
        /truncated/,
      ],
      [
        'a corrupt safetensors header',
        () =>
          brokenCopy('corrupt', (d) =>
            writeFileSync(
              join(d, 'model.safetensors'),
              Buffer.from('\x10\x00\x00\x00\x00\x00\x00\x00{not json!!!!!!}'),
            ),
          ),
        /corrupt/,
      ],
    ])('fails on %s with a one-line error', (_what, dir, pattern) => {
      expectOneLineError(run('generate', '--model', dir(), '--prompt', 'hello'), pattern);
    });

    it('fails on a prompt longer than the context with a one-line error', () => {
      const ids = Array.from({ length: 2100 }, (_, i) => 10 + (i % 100)).join(',');
      expectOneLineError(
        run('generate', '--model', qwen.dir, '--prompt-ids', ids),
        /prompt has 2100 tokens but the context holds 2048/,
      );
    });
  });

  it('rejects bad flags with a one-line error', () => {
    expectOneLineError(
      run('generate', '--model', DEMO_MODEL, '--prompt', 'x', '--temperature=-1'),
      /temperature/,
    );
    expectOneLineError(
      run('generate', '--model', DEMO_MODEL, '--prompt', 'x', '--scheduler', 'nope'),
      /unknown scheduler 'nope'; known: continuous, fcfs/,
    );
    expectOneLineError(run('generate', '--model', DEMO_MODEL), /exactly one of --prompt/);
  });
});
