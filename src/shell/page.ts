// The terminal page at `GET /terminal`, for local use: xterm.js (@xterm/xterm, its script and
// stylesheet served from node_modules by this service, no CDN) attached to a shell session the
// way UCloud's UI does it. The token and folder come from the URL fragment, which never reaches a
// server or a log: `/terminal#token=<jwt>&folder=/home-alice`. The page opens a session with the
// public route (POST /api/jobs/openTerminalInFolder) and attaches at the answer's
// `<domainOverride>/ucloud/<providerId>/websocket` with UCloud's messages: initialize (cols and
// rows), input, resize on window resize; `data` is written to the terminal.
//
// Content-Security-Policy: scripts, connections, fonts and images from 'self' only. Styles from
// 'self' plus 'unsafe-inline': xterm.js's DOM renderer injects <style> elements for its theme and
// cell sizes, which CSP blocks otherwise. No inline script.
// Imports hono (types) and node:fs/node:module (to read @xterm/xterm from node_modules).

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { Hono } from "hono";

export const TERMINAL_PAGE_CSP = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Terminal</title>
<link rel="stylesheet" href="/terminal/xterm.css">
<link rel="stylesheet" href="/terminal/terminal.css">
</head>
<body>
<div id="status">Connecting…</div>
<div id="terminal"></div>
<script src="/terminal/xterm.js"></script>
<script src="/terminal/terminal.js"></script>
</body>
</html>
`;

const STYLE = `html, body { margin: 0; height: 100%; background: #000; color: #ddd; font-family: sans-serif; }
body { display: flex; flex-direction: column; }
#status { padding: 2px 8px; font-size: 12px; background: #222; }
#status.error { background: #800; color: #fff; }
#terminal { flex: 1; min-height: 0; padding: 4px; }
`;

/** The page's script: plain browser JavaScript, no build step. */
const SCRIPT = `"use strict";
(function () {
  const status = document.getElementById("status");
  const container = document.getElementById("terminal");
  const say = (text, error) => { status.textContent = text; status.className = error ? "error" : ""; };
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  const folder = params.get("folder");
  if (!token || !folder) {
    say("Give the token and the folder in the URL: /terminal#token=<jwt>&folder=/home-alice", true);
    return;
  }
  const term = new Terminal({ cursorBlink: true, fontFamily: "monospace", fontSize: 14, scrollback: 5000 });
  term.open(container);

  // The cell size, measured once in the terminal's font; cols and rows fill the container.
  const probe = document.createElement("span");
  probe.textContent = "W".repeat(50);
  probe.style.cssText = "position:absolute;visibility:hidden;white-space:pre;font-family:monospace;font-size:14px;line-height:normal";
  document.body.appendChild(probe);
  const cell = { width: probe.getBoundingClientRect().width / 50, height: probe.getBoundingClientRect().height };
  probe.remove();
  const fit = () => {
    const box = container.getBoundingClientRect();
    const cols = Math.max(20, Math.floor((box.width - 24) / cell.width));
    const rows = Math.max(5, Math.floor((box.height - 8) / (cell.height * 1.02)));
    if (cols !== term.cols || rows !== term.rows) term.resize(cols, rows);
  };
  fit();

  let socket = null;
  let call = "";
  const send = (payload) => {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ call: call, streamId: "terminal", payload: payload }));
  };

  async function start() {
    const response = await fetch("/api/jobs/openTerminalInFolder", {
      method: "POST",
      headers: { authorization: "Bearer " + token, "content-type": "application/json" },
      body: JSON.stringify({ items: [{ folder: folder }] }),
    });
    if (!response.ok) {
      let why = response.status + " " + response.statusText;
      try { const body = await response.json(); if (body && body.why) why += ": " + body.why; } catch (e) {}
      throw new Error("Opening a session failed: " + why);
    }
    const opened = (await response.json()).responses[0];
    call = "jobs.provider." + opened.providerId + ".shell";
    socket = new WebSocket(opened.session.domainOverride + "/ucloud/" + opened.providerId + "/websocket");
    socket.addEventListener("open", () => {
      say("Connected: " + folder);
      send({ type: "initialize", sessionIdentifier: opened.session.sessionIdentifier, cols: term.cols, rows: term.rows });
      term.focus();
    });
    socket.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      const payload = message && message.payload;
      if (payload && payload.type === "data" && typeof payload.data === "string") term.write(payload.data);
    });
    socket.addEventListener("close", (event) => say("Disconnected" + (event.reason ? ": " + event.reason : "") + " (code " + event.code + ")", true));
  }

  term.onData((data) => send({ type: "input", data: data }));
  term.onResize((size) => send({ type: "resize", cols: size.cols, rows: size.rows }));
  let resizing = null;
  window.addEventListener("resize", () => { clearTimeout(resizing); resizing = setTimeout(fit, 100); });
  start().catch((error) => say(String(error && error.message ? error.message : error), true));
})();
`;

/** @xterm/xterm's files, read once from node_modules where the module resolves. */
function xtermFiles(): { js: string; css: string } {
  const require = createRequire(import.meta.url);
  const root = dirname(dirname(require.resolve("@xterm/xterm")));
  return { js: readFileSync(join(root, "lib/xterm.js"), "utf8"), css: readFileSync(join(root, "css/xterm.css"), "utf8") };
}

// biome-ignore lint/suspicious/noExplicitAny: mounted on the app of any environment.
export function mountTerminalPage(app: Hono<any>) {
  let files: { js: string; css: string } | null = null;
  const xterm = () => (files ??= xtermFiles());
  const headers = (type: string) => ({ "content-type": type, "cache-control": "no-cache", "x-content-type-options": "nosniff", "content-security-policy": TERMINAL_PAGE_CSP });
  app.get("/terminal", (c) => c.body(PAGE, 200, { ...headers("text/html; charset=utf-8"), "referrer-policy": "no-referrer" }));
  app.get("/terminal/terminal.js", (c) => c.body(SCRIPT, 200, headers("text/javascript; charset=utf-8")));
  app.get("/terminal/terminal.css", (c) => c.body(STYLE, 200, headers("text/css; charset=utf-8")));
  app.get("/terminal/xterm.js", (c) => c.body(xterm().js, 200, headers("text/javascript; charset=utf-8")));
  app.get("/terminal/xterm.css", (c) => c.body(xterm().css, 200, headers("text/css; charset=utf-8")));
}
