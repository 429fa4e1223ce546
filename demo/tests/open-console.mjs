// Opens the demo page in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core, which never downloads a browser) and reports
// what the page shows, as one JSON line on stdout.
//
//   node demo/tests/open-console.mjs --url URL --expect drawn|refused
//        --screenshot FILE.png [--page-screenshot FILE.png]
//        [--spki BASE64] [--timeout-ms 30000] [--type TEXT] [--min-colours N]
//        [--stay-ms N]
//
// --expect drawn:   wait until noVNC connected and the canvas shows at
//                   least N colours (default 2); screenshot the canvas. With --type,
//                   then type TEXT into the console and screenshot again
//                   (FILE-typed.png). With --stay-ms, then check the console
//                   is still connected N ms later (no spurious disconnect).
// --expect refused: wait until the page reports the gateway's refusal.
// The gateway certificate is trusted only by its public key hash (--spki:
// Chromium's --ignore-certificate-errors-spki-list), nothing else is relaxed.
// Exit code 0 when the expectation was met, 1 otherwise (the JSON says why).
import { chromium } from 'playwright-core';

function args() {
  const out = { timeoutMs: 30000 };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i += 2) {
    const key = a[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    out[key] = a[i + 1];
  }
  out.timeoutMs = Number(out.timeoutMs);
  out.minColours = Number(out.minColours || 2);
  return out;
}

const opts = args();
const minColours = opts.minColours;
const executablePath = process.env.MKSGATE_CHROMIUM || '/usr/bin/chromium';
const flags = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
if (opts.spki) flags.push(`--ignore-certificate-errors-spki-list=${opts.spki}`);

const result = { expect: opts.expect, ok: false, console: [] };
const started = Date.now();
// playwright's launch() gives Chromium a new empty profile directory.
const browser = await chromium.launch({ executablePath, headless: true, args: flags });
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  page.on('console', (m) => result.console.push(`${m.type()}: ${m.text()}`.slice(0, 300)));
  page.on('pageerror', (e) => result.console.push(`pageerror: ${e.stack || e.message}`.slice(0, 600)));
  await page.goto(opts.url, { waitUntil: 'load', timeout: opts.timeoutMs });
  const want = opts.expect === 'drawn'
    ? (min) => {
      const d = window.mksgateDemo;
      if (!d || d.phase !== 'connected' || !d.drawn) return false;
      const s = d.canvasStats();
      return s && s.distinctColours >= min;
    }
    : () => window.mksgateDemo && ['refused', 'unreachable'].includes(window.mksgateDemo.phase);
  let waitError = null;
  try {
    await page.waitForFunction(want, minColours, { timeout: opts.timeoutMs, polling: 100 });
  } catch (e) {
    waitError = e.message.split('\n')[0];
  }
  result.waitedMs = Date.now() - started;
  const snapshot = () => page.evaluate(() => ({
    phase: window.mksgateDemo ? window.mksgateDemo.phase : 'no-script',
    drawn: window.mksgateDemo ? window.mksgateDemo.drawn : false,
    code: window.mksgateDemo ? window.mksgateDemo.code : null,
    status: document.getElementById('status').textContent,
    decision: document.getElementById('decision').textContent,
    stats: window.mksgateDemo ? window.mksgateDemo.canvasStats() : null,
  }));
  Object.assign(result, await snapshot());
  if (opts.expect === 'drawn') {
    // The console canvas (the page marks it: wmks keeps several).
    const canvas = page.locator('#screen canvas[data-console="1"]');
    if (await canvas.count()) {
      // Let a few more updates arrive (the VM may still be painting).
      await page.waitForTimeout(1000);
      await canvas.screenshot({ path: opts.screenshot });
      result.screenshot = opts.screenshot;
      if (opts.type && !waitError) {
        await canvas.click();
        await page.keyboard.type(opts.type, { delay: 60 });
        await page.waitForTimeout(1500);
        const typed = opts.screenshot.replace(/\.png$/, '-typed.png');
        await canvas.screenshot({ path: typed });
        result.typedScreenshot = typed;
      }
      if (opts.stayMs && !waitError) {
        await page.waitForTimeout(Number(opts.stayMs));
        result.stayedMs = Number(opts.stayMs);
        result.phaseAfterStay = await page.evaluate(() => window.mksgateDemo.phase);
      }
    }
    result.ok = !waitError && result.phase === 'connected' && result.drawn
      && (!opts.stayMs || result.phaseAfterStay === 'connected');
  } else {
    result.ok = !waitError && result.phase === 'refused';
  }
  result.client = await page.evaluate(() => window.mksgateDemo && window.mksgateDemo.client);
  result.wmksErrors = await page.evaluate(() => window.mksgateDemo && window.mksgateDemo.wmksErrors);
  if (opts.pageScreenshot) {
    await page.screenshot({ path: opts.pageScreenshot, fullPage: true });
    result.pageScreenshot = opts.pageScreenshot;
  }
  if (waitError) result.error = waitError;
} catch (e) {
  result.error = String(e && e.message ? e.message : e).split('\n')[0];
} finally {
  await browser.close();
}
result.totalMs = Date.now() - started;
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
