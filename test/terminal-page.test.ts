// The terminal page (issue 18): GET /terminal in a real browser (Debian's chromium, headless,
// driven by puppeteer-core) against a real Bun server of the service with the simulator and a
// worker: the page opens a session through the public route with the token from its fragment,
// attaches over the WebSocket, and what is typed runs in bash in the drive. Skipped, saying so,
// when /usr/bin/chromium is missing (CI installs Debian's `chromium` package).

import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import puppeteer, { type Browser } from "puppeteer-core";
import { type Api, createApi } from "../src/runtimes/api.ts";
import { listenWithBun } from "../src/runtimes/bun.ts";
import { TERMINAL_PAGE_CSP } from "../src/shell/page.ts";
import { makeDrive } from "./support/drives.ts";
import { eventually } from "./support/eventually.ts";
import { startHarness } from "./support/harness.ts";
import { SECRET, token } from "./support/service.ts";

const CHROMIUM = "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`test/terminal-page.test.ts: skipped: no ${CHROMIUM} (apt-get install chromium)`);

const h = await startHarness({ simulator: { namespace: "iapps-terminal-page" }, storage: {}, settings: { auth: { jwt_secret: SECRET } } });
const api: Api = createApi(h.config({ server: { host: "127.0.0.1", port: 0 } }));
const { url, listener } = listenWithBun(api);
const profile = mkdtempSync(join(tmpdir(), "iapps-chromium-"));
let browser: Browser | null = null;
afterAll(async () => {
  await browser?.close();
  rmSync(profile, { recursive: true, force: true });
  api.shells.closeAll();
  await listener.drain();
  await api.close();
});

beforeEach(async () => {
  await makeDrive(api.context.drives, h.root, "home-alice", null, []);
  h.startWorker();
});

async function launch(): Promise<Browser> {
  browser ??= await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  return browser;
}

describe("GET /terminal", () => {
  test("the page, xterm.js and its stylesheet are served by the service, with a CSP allowing scripts and connections from 'self' only", async () => {
    const page = await fetch(`${url}/terminal`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    expect(page.headers.get("content-security-policy")).toBe(TERMINAL_PAGE_CSP);
    const html = await page.text();
    expect(html).not.toContain("http");
    expect(html).not.toMatch(/<script>[^<]/);
    for (const [path, type] of [["/terminal/xterm.js", "javascript"], ["/terminal/xterm.css", "css"], ["/terminal/terminal.js", "javascript"]] as const) {
      const response = await fetch(`${url}${path}`);
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toContain(type);
      expect((await response.text()).length).toBeGreaterThan(100);
    }
  });

  test.skipIf(!haveChromium)("in chromium: echo $((6*7)) typed into the page shows 42", async () => {
    const page = await (await launch()).newPage();
    const problems: string[] = [];
    page.on("pageerror", (error) => problems.push(String(error)));
    // Console errors (a CSP refusal is one), and failed loads other than the favicon it has none of.
    page.on("console", (message) => {
      if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) problems.push(message.text());
    });
    page.on("response", (response) => {
      if (response.status() >= 400 && !response.url().endsWith("/favicon.ico")) problems.push(`${response.status()} ${response.url()}`);
    });
    await page.setViewport({ width: 900, height: 500 });
    await page.goto(`${url}/terminal#token=${await token("alice")}&folder=/home-alice`);
    // xterm's rendered rows, one line each.
    const screen = () => Array.from(document.querySelector(".xterm-rows")?.children ?? [], (row) => row.textContent ?? "").join("\n");
    const rows = async () => page.evaluate(screen);
    const shows = async (pattern: RegExp, seconds: number, what: string) => {
      try {
        await eventually(async () => pattern.test(await rows()), seconds, what);
      } catch (e) {
        throw new Error(`${e}; the page shows ${JSON.stringify(await rows().catch(() => ""))}, status ${await page.$eval("#status", (s) => s.textContent)}; ${problems.join("; ")}`);
      }
    };
    await shows(/\$\s*$/m, 60, "a prompt");
    await page.focus(".xterm-helper-textarea");
    await page.keyboard.type("echo $((6*7))");
    await page.keyboard.press("Enter");
    await shows(/^42\s*$/m, 20, "42 on a line of its own");
    expect(await page.$eval("#status", (s) => s.textContent)).toBe("Connected: /home-alice");
    // No script error and nothing the CSP refused.
    expect(problems).toEqual([]);
    await page.close();
  }, 120_000);
});
