import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Browser, browse, missing, type Served, serve } from './harness';

const skip = missing();

describe.skipIf(skip)('playground behind an API key', () => {
  let server: Served;
  let browser: Browser;

  beforeAll(async () => {
    server = await serve(['--api-key', 'sesame']);
    browser = await browse(`${server.url}/#chat`);
  });
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
  });

  it("shows the server's 401, takes the key, and then works", async () => {
    const { page } = browser;
    const message = await page.locator('main > .server-error p').textContent();
    expect(message).toMatch(/API key/);
    // The refused /v1/playground/info is the only thing chromium logged.
    expect(browser.errors.splice(0)).toEqual([
      'Failed to load resource: the server responded with a status of 401 (Unauthorized)',
    ]);
    await page.fill('main > .server-error input[name=key]', 'sesame');
    await page.click('main > .server-error button');
    await page.locator('[data-testid=model]').waitFor();
    await page.click('button.example >> nth=0');
    await page.click('.chat button.send');
    await page.locator('.message.assistant .stats').waitFor();
    expect(await page.locator('.message.assistant .server-error').count()).toBe(0);
    expect(browser.errors).toEqual([]);
  });
});
