import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixture, fixtureTitle } from '@switchyard/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine } from '../../create-engine.js';
import { buildServer, type Server } from '../app.js';

const internvl = fixture('internvl-tiny');
// The first python3 that has requests: the one on PATH, else Debian's (where .ci/run installs it).
const pythonBin = ['python3', '/usr/bin/python3'].find(
  (bin) => spawnSync(bin, ['-c', 'import requests'], { encoding: 'utf8' }).status === 0,
);
const noPython = pythonBin
  ? undefined
  : 'python3 with requests is missing (apt-get install python3-requests)';
if (noPython) console.warn(`skipping the LightLLM Python client test: ${noPython}`);

describe.skipIf(internvl.missing !== undefined)(fixtureTitle(internvl, 'LightLLM API on InternVL'), () => {
  let server: Server;
  let url: string;
  beforeAll(async () => {
    server = buildServer({ engine: await createEngine({ model: internvl.dir }) });
    url = await server.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(() => server.drain(1000));

  it.skipIf(noPython !== undefined)(
    "a Python requests client gets transformers' greedy answer for every case, whole and streamed",
    async () => {
      const script = join(import.meta.dirname, 'testdata', 'lightllm_client.py');
      // Asynchronously: the server answers from this very process.
      const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(pythonBin!, [script, url, internvl.dir], { timeout: 120_000 });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d) => {
          stdout += d;
        });
        child.stderr.on('data', (d) => {
          stderr += d;
        });
        child.on('close', (status) => resolve({ status, stdout, stderr }));
      });
      expect(r.status, r.stderr).toBe(0);
      const lines = r.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(lines).toHaveLength(internvl.reference().chat!.length);
      for (const c of lines) {
        expect(c.generated_ids, `case ${c.case}`).toEqual(c.expected);
        expect(c.stream_ids, `case ${c.case} streamed`).toEqual(c.expected);
        expect(c.count_output_tokens).toBe(c.expected.length);
        expect(c.finish_reason).toBe('length');
      }
    },
    150_000,
  );

  it('answers in LightLLM shapes and says what is wrong in bad bodies', async () => {
    const ref = internvl.reference().chat![0];
    const image = readFileSync(join(internvl.dir, '..', 'images', ref.images![0])).toString('base64');
    const post = (path: string, body: unknown) =>
      fetch(`${url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const inputs = ref.prompt_text!.replace('<IMG_CONTEXT>', '<img></img>');
    const ok = await post('/generate', {
      inputs,
      parameters: { max_new_tokens: 3 },
      multimodal_params: { images: [{ type: 'base64', data: image }] },
    });
    expect(ok.status).toBe(200);
    const body = await ok.json();
    expect(Object.keys(body).sort()).toEqual([
      'count_output_tokens',
      'finish_reason',
      'generated_text',
      'prompt_tokens',
    ]);
    expect(body.generated_text).toHaveLength(1);
    expect(body.prompt_tokens).toBe(ref.input_ids!.length);
    const two = await post('/generate', {
      inputs,
      parameters: { max_new_tokens: 3 },
      multimodal_params: {
        images: [
          { type: 'base64', data: image },
          { type: 'base64', data: image },
        ],
      },
    });
    expect(two.status).toBe(400);
    expect((await two.json()).error.message).toMatch(/1 <img><\/img> marks but 2 images/);
    const unknown = await post('/generate', { inputs: 'x', parameters: { max_new_token: 3 } });
    expect(unknown.status).toBe(400);
    expect((await unknown.json()).error.message).toMatch(/parameters has an unknown key 'max_new_token'/);
    const badImage = await post('/generate', {
      inputs: '<img></img>x',
      multimodal_params: { images: [{ type: 'png', data: 'x' }] },
    });
    expect(badImage.status).toBe(400);
  });
});
