import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Browser, browse, canvasesDrawn, cliJson, missing, ROOT, type Served, serve } from './harness';

const skip = missing();

const WORKLOAD = {
  workload: 'shared-prefix',
  num_requests: '8',
  input_len: '16',
  output_len: '8',
  shared_prefix_len: '32',
  num_prefixes: '2',
  seed: '3',
};

async function fillWorkload(page: Page) {
  for (const [k, v] of Object.entries(WORKLOAD)) {
    if (k === 'workload') await page.selectOption('.workload select', v);
    else await page.fill(`.workload input[name=${k}]`, v);
  }
}

describe.skipIf(skip)('playground compare in chromium against switchyard serve', () => {
  let server: Served;
  let browser: Browser;

  beforeAll(async () => {
    server = await serve();
    browser = await browse(`${server.url}/#compare`);
  });
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('runs fcfs × paged against continuous × radix: two columns, charts drawn, hit rates as switchyard bench prints', async () => {
    const { page } = browser;
    await page.locator('.config').nth(1).waitFor();
    expect(
      await page
        .locator('.config select[name=scheduler]')
        .evaluateAll((s) => s.map((x) => (x as HTMLSelectElement).value)),
    ).toEqual(['fcfs', 'continuous']);
    expect(
      await page
        .locator('.config select[name="KV manager"]')
        .evaluateAll((s) => s.map((x) => (x as HTMLSelectElement).value)),
    ).toEqual(['paged', 'radix']);
    await fillWorkload(page);
    await page.click('button.run');
    await page.locator('.table-wrap table').waitFor({ timeout: 20_000 });
    expect(await page.locator('.result-column').count()).toBe(2);
    expect(await page.locator('.result-column .figures').count()).toBe(2);
    // uPlot drew every chart: the two timelines and the three CDFs.
    const drawn = await canvasesDrawn(page, '.result-column canvas, .cdfs canvas');
    expect(drawn).toEqual([true, true, true, true, true]);

    // "Copy as CLI command" reproduces each column: the same hit rate from the real CLI.
    const shown = await page
      .locator('.result-column [data-metric=prefix_hit_rate]')
      .evaluateAll((els) => els.map((e) => Number((e as HTMLElement).dataset.value)));
    const commands = ((await page.textContent('pre.cli')) ?? '').trim().split('\n');
    expect(commands).toHaveLength(2);
    expect(commands[0]).toContain('--scheduler fcfs --attention paged');
    expect(commands[1]).toContain('--scheduler continuous --attention radix');
    for (const [i, command] of commands.entries()) {
      const args = command.split(' ').slice(2); // drop "npx switchyard"
      expect(args).toEqual(
        expect.arrayContaining(['--workload', 'shared-prefix', '--seed', '3', '--num-requests', '8']),
      );
      const bench = await cliJson<{ prefix_hit_rate: number; requests: number }>(args);
      expect(bench.requests).toBe(8);
      expect(shown[i]).toBe(bench.prefix_hit_rate);
    }
    expect(shown[0]).toBeGreaterThan(0);
    if (process.env.SWITCHYARD_SCREENSHOTS === '1')
      await page.screenshot({ path: join(ROOT, 'docs', 'playground-compare.png'), fullPage: true });
  });

  it("shows the server's 400 for a config that cannot run, naming the field", async () => {
    const { page } = browser;
    await page.fill('.config >> nth=1 >> input[name=block_size]', '0');
    const logged = browser.errors.length;
    await page.click('button.run');
    const shown = await page.locator('.compare .server-error').textContent();
    expect(browser.errors.splice(logged)).toEqual([
      'Failed to load resource: the server responded with a status of 400 (Bad Request)',
    ]);
    const res = await fetch(`${server.url}/v1/playground/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ configs: [{}, { block_size: 0 }] }),
    });
    expect(res.status).toBe(400);
    const message = ((await res.json()) as { error: { message: string } }).error.message;
    expect(message).toContain('configs[1].block_size');
    expect(shown).toBe(message);
    await page.fill('.config >> nth=1 >> input[name=block_size]', '');
  });

  it('cancels a run from the page: the columns say so and the next run can start', async () => {
    const { page } = browser;
    await page.fill('.workload input[name=num_requests]', '256');
    await page.fill('.workload input[name=output_len]', '64');
    await page.click('button.run');
    await page.locator('.result-column .progress:has-text("running")').first().waitFor();
    await page.click('.compare button.stop');
    await expect
      .poll(() => page.locator('.result-column .server-error').allTextContents())
      .toEqual(['the run was cancelled', 'the run was cancelled']);
    await expect.poll(() => page.locator('button.run').isEnabled()).toBe(true);
    await fillWorkload(page);
  });

  it('stays usable at 360 px: no sideways scrolling, the main controls in view', async () => {
    const { page } = browser;
    await page.setViewportSize({ width: 360, height: 740 });
    for (const [mode, button] of [
      ['chat', '.chat button.send'],
      ['compare', 'button.run'],
      ['side-by-side', '.side-by-side button.send'],
    ]) {
      await page.goto(`${server.url}/#${mode}`);
      await page.locator(button).waitFor();
      expect(await page.evaluate(() => document.documentElement.scrollWidth), mode).toBeLessThanOrEqual(360);
      const box = (await page.locator(button).boundingBox())!;
      expect(box.x, mode).toBeGreaterThanOrEqual(0);
      expect(box.x + box.width, mode).toBeLessThanOrEqual(360);
    }
    // The results too: columns stack, the table scrolls inside its own box.
    await page.goto(`${server.url}/#compare`);
    await fillWorkload(page);
    await page.click('button.run');
    await page.locator('.table-wrap table').waitFor({ timeout: 20_000 });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
  });

  it('logged no console errors', () => {
    expect(browser.errors).toEqual([]);
  });
});
