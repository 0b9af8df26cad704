import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Page, chromium } from 'playwright-core';
import { exists } from '../../artifacts/fsutil.ts';
import type { ArtifactStore } from '../../artifacts/store.ts';
import { OUTPUT } from './fixtures.ts';

const CHROMIUM = process.env['EMBEDFLOW_CHROMIUM'] ?? '/usr/bin/chromium';

/**
 * Open a report artifact's report.html in headless Chromium (Debian's, driven by playwright-core),
 * save a full-page screenshot (and the page, to open by hand) under test/.output/eval, and hand back what the page logged and
 * requested, with whatever `inspect` reads from the rendered page.
 */
export async function renderInChromium<T>(
  store: ArtifactStore,
  digest: string,
  screenshot: string,
  inspect: (page: Page) => Promise<T>,
): Promise<{ problems: string[]; requests: string[]; state: T; htmlPath: string }> {
  if (!(await exists(CHROMIUM))) {
    throw new Error(`Chromium is not installed at ${CHROMIUM}: run scripts/install-chromium.sh (or set EMBEDFLOW_CHROMIUM)`);
  }
  const htmlPath = (await store.open(digest)).file('report.html');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const problems: string[] = [];
    const requests: string[] = [];
    page.on('console', (msg) => {
      if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`${msg.type()}: ${msg.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    page.on('request', (req) => requests.push(req.url()));
    await page.goto(pathToFileURL(htmlPath).href, { waitUntil: 'load' });
    await mkdir(OUTPUT, { recursive: true });
    await page.screenshot({ path: join(OUTPUT, screenshot), fullPage: true });
    await copyFile(htmlPath, join(OUTPUT, screenshot.replace(/\.png$/, '.html')));
    return { problems, requests, state: await inspect(page), htmlPath };
  } finally {
    await browser.close();
  }
}
