// Opens the fleet demo's page in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core), presses "New link:
// gateway N first", waits for the attempt's row, and reports what the row
// says as one JSON line: which gateway admitted the link and what the
// other answered.
//
//   node demo/tests/fleet-page.mjs --url URL --first 0|1 --screenshot FILE.png [--timeout-ms 30000]
//
// Exit code 0 when a row appeared, 1 otherwise (the JSON says why).
import { chromium } from 'playwright-core';

const opts = { timeoutMs: 30000 };
const a = process.argv.slice(2);
for (let i = 0; i < a.length; i += 2) {
  opts[a[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = a[i + 1];
}
const executablePath = process.env.MKSGATE_CHROMIUM || '/usr/bin/chromium';
const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const result = { ok: false, console: [] };
const browser = await chromium.launch({ executablePath, headless: true, args: flags });
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 600 } });
  page.on('console', (m) => result.console.push(`${m.type()}: ${m.text()}`.slice(0, 300)));
  page.on('pageerror', (e) => result.console.push(`pageerror: ${e.message}`.slice(0, 300)));
  await page.goto(opts.url, { waitUntil: 'load', timeout: Number(opts.timeoutMs) });
  await page.waitForFunction(() => !document.getElementById('members').textContent.includes('loading'),
    null, { timeout: Number(opts.timeoutMs) });
  await page.click(`#try-${opts.first}`);
  await page.waitForSelector('tr.attempt', { timeout: Number(opts.timeoutMs) });
  const row = await page.evaluate(() => {
    const r = document.querySelector('tr.attempt');
    return {
      first: r.querySelector('.first b').dataset.code,
      firstText: r.querySelector('.first').textContent,
      second: r.querySelector('.second b').dataset.code,
      secondText: r.querySelector('.second').textContent,
      members: document.getElementById('members').textContent,
    };
  });
  Object.assign(result, row, { ok: true });
  if (opts.screenshot) await page.screenshot({ path: opts.screenshot });
} catch (e) {
  result.error = e.message.split('\n')[0];
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
