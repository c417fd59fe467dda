import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Browser, browse, cliJson, gauge, MODEL, missing, ROOT, type Served, serve } from './harness';

const skip = missing();

/** The engine's greedy answer from the CLI (`switchyard generate --json`), for a picture and a question. */
async function greedy(picture: string, question: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-msgs-'));
  const file = join(dir, 'messages.json');
  writeFileSync(
    file,
    JSON.stringify([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: question }] }]),
  );
  const out = await cliJson<{ text: string }>([
    'generate',
    '--model',
    MODEL,
    '--messages',
    file,
    '--image',
    join(MODEL, 'examples', picture),
    '--max-tokens',
    '128',
    '--json',
  ]);
  return out.text;
}

/** The served engine's greedy answer through the API (not streamed, temperature 0). */
async function greedyApi(url: string, picture: string, question: string): Promise<string> {
  const png = readFileSync(join(MODEL, 'examples', picture)).toString('base64');
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      messages: [
        {
          role: 'user',
          content: [
            { type: 'image_url', image_url: { url: `data:image/png;base64,${png}` } },
            { type: 'text', text: question },
          ],
        },
      ],
      temperature: 0,
      max_tokens: 128,
    }),
  });
  return ((await res.json()) as { choices: { message: { content: string } }[] }).choices[0].message.content;
}

/** Sends what the composer holds and waits for the answer to finish; returns its text. */
async function sendAndWait(page: Page): Promise<string> {
  const before = await page.locator('.message.assistant .stats').count();
  await page.click('.chat button.send');
  await page.locator('.message.assistant .stats').nth(before).waitFor();
  return (await page.locator('.message.assistant .text').last().textContent()) ?? '';
}

/** Puts a picture on the page's clipboard-like DataTransfer and fires `type` (paste or drop) at `selector`. */
async function fire(page: Page, selector: string, type: 'paste' | 'drop', png: Buffer) {
  await page.evaluate(
    ({ selector, type, b64 }) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'picture.png', { type: 'image/png' }));
      const target = document.querySelector(selector)!;
      const event =
        type === 'paste'
          ? new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true })
          : new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true });
      target.dispatchEvent(event);
    },
    { selector, type, b64: png.toString('base64') },
  );
}

const screenshot = async (page: Page, name: string) => {
  if (process.env.SWITCHYARD_SCREENSHOTS === '1') await page.screenshot({ path: join(ROOT, 'docs', name) });
};

describe.skipIf(skip)('playground chat in chromium against switchyard serve', () => {
  let server: Served;
  let browser: Browser;

  beforeAll(async () => {
    server = await serve();
    browser = await browse(`${server.url}/#chat`);
  });
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('shows the model and device, and answers an example picture with the engine greedy answer', async () => {
    const { page } = browser;
    await expect.poll(() => page.textContent('[data-testid=model]')).toContain('switchyard-demo-vision');
    expect(await page.textContent('[data-testid=model]')).toContain('cpu');
    // One click: the picture is attached and its question (from demo_reference.json) is filled in.
    await page.click('button.example[data-file="scene1.png"]');
    const question = await page.inputValue('.chat textarea[name=prompt]');
    expect(question.length).toBeGreaterThan(0);
    expect(await page.locator('.attachments .thumb').count()).toBe(1);
    const [answer, expected] = await Promise.all([sendAndWait(page), greedy('scene1.png', question)]);
    expect(answer).toBe(expected);
    const stats = await page.locator('.message.assistant .stats').last().textContent();
    expect(stats).toMatch(
      /TTFT \d+ ms · [\d.]+ tok\/s · \d+ tokens · \d+\/\d+ prompt tokens cached · finish: stop/,
    );
    await screenshot(page, 'playground-chat.png');
  });

  it('attaches a pasted picture, a dropped one and a picked file, and answers each as the engine does', async () => {
    const { page } = browser;
    await page.click('.chat button.secondary:has-text("New chat")');
    const cases: [string, 'paste' | 'drop' | 'pick'][] = [
      ['scene5.png', 'paste'],
      ['scene3.png', 'drop'],
      ['scene6.png', 'pick'],
    ];
    for (const [picture, how] of cases) {
      const path = join(MODEL, 'examples', picture);
      if (how === 'pick') await page.setInputFiles('[data-testid=file-input]', path);
      else
        await fire(page, how === 'paste' ? '.chat textarea[name=prompt]' : '.chat', how, readFileSync(path));
      await expect.poll(() => page.locator('.attachments .thumb').count()).toBe(1);
      const question = 'What do you see?';
      await page.fill('.chat textarea[name=prompt]', question);
      const answer = await sendAndWait(page);
      expect(answer, `${how}: ${picture}`).toBe(await greedyApi(server.url, picture, question));
      await page.click('.chat button.secondary:has-text("New chat")');
    }
  });

  it('stops a long answer: the request is aborted and the server has no request running', async () => {
    const { page } = browser;
    await page.click('.chat details.settings summary');
    await page.fill('[data-testid=sampling-chat] input[name=max_tokens]', '900');
    await page.check('[data-testid=sampling-chat] input[name=ignore_eos]');
    await page.fill('.chat textarea[name=prompt]', 'Describe the image.');
    const generated = await gauge(server.url, 'generation_tokens_total');
    await page.click('.chat button.send');
    await expect
      .poll(async () => ((await page.locator('.message.assistant .text').last().textContent()) ?? '').length)
      .toBeGreaterThan(5);
    expect(await gauge(server.url, 'num_requests_running')).toBe(1);
    await page.click('.chat button.stop');
    await page.locator('.message.assistant .note:has-text("stopped")').waitFor();
    await expect.poll(() => gauge(server.url, 'num_requests_running'), { timeout: 3000 }).toBe(0);
    // The engine ended the request early: it counts fewer than the 900 tokens asked for.
    const tokens = (await gauge(server.url, 'generation_tokens_total')) - generated;
    expect(tokens).toBeGreaterThan(0);
    expect(tokens).toBeLessThan(900);
    await page.uncheck('[data-testid=sampling-chat] input[name=ignore_eos]');
    await page.fill('[data-testid=sampling-chat] input[name=max_tokens]', '128');
  });

  it("shows the server's own words for a request it refuses", async () => {
    const { page } = browser;
    await page.fill('[data-testid=sampling-chat] input[name=temperature]', '-1');
    await page.fill('.chat textarea[name=prompt]', 'Hello?');
    const logged = browser.errors.length;
    await page.click('.chat button.send');
    const shown = await page.locator('.message.assistant .server-error').last().textContent();
    // Chromium logs the refused request itself; that one line is expected, nothing else.
    expect(browser.errors.splice(logged)).toEqual([
      'Failed to load resource: the server responded with a status of 400 (Bad Request)',
    ]);
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        messages: [{ role: 'user', content: 'Hello?' }],
        temperature: -1,
        stream: true,
      }),
    });
    expect(res.status).toBe(400);
    expect(shown).toBe(((await res.json()) as { error: { message: string } }).error.message);
    await page.fill('[data-testid=sampling-chat] input[name=temperature]', '0');
  });

  it('side by side: one prompt to two sampling settings, answers in two columns', async () => {
    const { page } = browser;
    await page.goto(`${server.url}/#side-by-side`);
    await page.click('button.example[data-file="scene4.png"]');
    const question = await page.inputValue('.side-by-side textarea[name=prompt]');
    await page.click('.side-by-side button.send');
    await page.locator('.answer-column .stats').nth(1).waitFor();
    await page.locator('.answer-column .stats').nth(0).waitFor();
    const texts = await page.locator('.answer-column .text').allTextContents();
    expect(texts).toHaveLength(2);
    expect(texts[0]).toBe(await greedy('scene4.png', question));
    expect(texts[1].length).toBeGreaterThan(0);
    await screenshot(page, 'playground-side-by-side.png');
  });

  it('logged no console errors', () => {
    expect(browser.errors).toEqual([]);
  });
});
