// Drives Firefox ESR over WebDriver BiDi for Patchbay's page tests (test/testenv/firefox.go). One JSON request a
// line on stdin, one JSON reply a line on stdout ({id, ok, value|error}); console messages and page errors come
// as {event, page, type, text}. The Go side owns this process and ends it by closing stdin.
//   node driver.mjs '{"executable":"/usr/bin/firefox-esr","profile":DIR,"prefs":{...}}'
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

const opts = JSON.parse(process.argv[2] || "{}");
const out = (m) => process.stdout.write(JSON.stringify(m) + "\n");

const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: opts.executable || "/usr/bin/firefox-esr",
  headless: true,
  userDataDir: opts.profile,
  acceptInsecureCerts: true,
  extraPrefsFirefox: opts.prefs || {},
  args: opts.args || [],
});
const pages = new Map();
// pid: Firefox runs in a process group of its own (puppeteer starts it detached); the Go side kills it by that.
out({ event: "ready", version: await browser.version(), pid: browser.process()?.pid || 0 });

async function handle(req) {
  switch (req.op) {
    case "newPage": {
      // A window per page: a tab behind another is a background tab, whose timers and media Firefox throttles
      // (a room member in a background tab heard almost nothing).
      const p = await browser.newPage({ type: "window" });
      pages.set(req.page, p);
      p.on("console", (m) => out({ event: "console", page: req.page, type: m.type(), text: m.text() }));
      p.on("pageerror", (e) => out({ event: "console", page: req.page, type: "error", text: String(e && e.message || e) }));
      return null;
    }
    case "goto":
      await pages.get(req.page).goto(req.url, { waitUntil: "load", timeout: req.timeout || 30000 });
      return null;
    case "eval": {
      // The expression may be a promise; its value comes back as JSON text.
      const s = await pages.get(req.page).evaluate(`(async () => JSON.stringify(await (${req.expr})))()`);
      return s === undefined ? null : s;
    }
    case "click": {
      // As chromedp.Click does: wait until the element is shown (a button a state change is about to reveal).
      const p = pages.get(req.page);
      await p.waitForSelector(req.selector, { visible: true, timeout: req.timeout || 10000 });
      await p.click(req.selector);
      return null;
    }
    case "type":
      await pages.get(req.page).type(req.selector, req.text);
      return null;
    case "screenshot":
      // PNG of the viewport, base64.
      return await pages.get(req.page).screenshot({ encoding: "base64" });
    case "closePage":
      await pages.get(req.page)?.close();
      pages.delete(req.page);
      return null;
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    out({ id: 0, ok: false, error: `bad request: ${e}` });
    return;
  }
  handle(req).then((value) => out({ id: req.id, ok: true, value }), (e) => out({ id: req.id, ok: false, error: String(e && e.message || e) }));
});
rl.on("close", async () => {
  try { await browser.close(); } catch { /* already gone */ }
  process.exit(0);
});
