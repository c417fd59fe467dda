import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_VISION_MODEL } from './cli.js';
import { type Cli, startCli } from './http/hostile-helpers.js';

/**
 * `--visual_infer_batch_size` (LightLLM's spelling of --vision-batch-size) on the real binary:
 * concurrent picture requests from the official client get transformers' answers, and /metrics
 * counts the tower runs and what they encoded.
 */
describe('switchyard serve --visual_infer_batch_size', () => {
  let cli: Cli;
  beforeAll(async () => {
    cli = await startCli([
      '--model',
      DEMO_VISION_MODEL,
      '--visual_infer_batch_size',
      '4',
      '--no-log-requests',
    ]);
  });
  afterAll(() => cli?.kill());

  it('answers 8 concurrent picture requests as transformers does; /metrics counts the tower runs', async () => {
    const ref = JSON.parse(readFileSync(join(DEMO_VISION_MODEL, 'demo_reference.json'), 'utf8'));
    const client = new OpenAI({ baseURL: `${cli.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const answers = await Promise.all(
      ref.chat.map((c: { image: string; messages: { content: { text?: string }[] }[] }) =>
        client.chat.completions.create({
          model: 'switchyard-demo-vision',
          messages: [
            {
              role: 'user',
              content: [
                {
                  type: 'image_url',
                  image_url: {
                    url: `data:image/png;base64,${readFileSync(join(DEMO_VISION_MODEL, c.image)).toString('base64')}`,
                  },
                },
                { type: 'text', text: c.messages[0].content[1].text! },
              ],
            },
          ],
          max_tokens: 24,
        }),
      ),
    );
    for (const [i, a] of answers.entries()) {
      expect(a.choices[0].message.content?.trim()).toBe(ref.chat[i].generated_text);
    }
    const text = await (await fetch(`${cli.url}/metrics`)).text();
    const value = (name: string) =>
      Number(
        text
          .split('\n')
          .find((l) => l.startsWith(`switchyard:${name}{`))
          ?.split(' ')
          .pop(),
      );
    expect(value('vision_encoder_images_total')).toBe(8);
    expect(value('vision_encoder_tiles_total')).toBe(8);
    // Whether pictures met at the tower depends on when each was decoded; never more runs than pictures.
    expect(value('vision_encoder_runs_total')).toBeGreaterThanOrEqual(2);
    expect(value('vision_encoder_runs_total')).toBeLessThanOrEqual(8);
  });
});
