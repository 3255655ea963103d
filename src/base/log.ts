// Logs on stderr, one line each: JSON (for a log pipeline; readable with `jq`) or a readable
// line for a terminal, as `[log] format` says (`auto`: readable when stderr is a terminal).
// Every line written while a request id is current (src/base/request-id.ts) carries it as `requestId`.
// `[log] level` and `[log] format` apply once src/main.ts has read the configuration; their
// variables IAPPS_LOG_LEVEL and IAPPS_LOG_FORMAT are also read at each call, so a script, a test
// or a process that never reads config.toml may set them after importing this module.
// Every line is scrubbed of URL passwords (src/base/secrets.ts) as it is written: callers mask
// what they know is a URL, and this catches the rest, such as a library's error that quotes one.
// Imports src/base/request-id.ts and src/base/secrets.ts only.

import { maskSecrets } from "./secrets.ts";
import { currentRequestId } from "./request-id.ts";

export type Level = "debug" | "info" | "warn" | "error";
export type LogFormat = "json" | "pretty" | "auto";
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

const settings: { level: Level; format: LogFormat } = { level: "info", format: "auto" };

/** Applies `[log]` of the configuration (src/main.ts calls it once the configuration is read). */
export function configureLog(options: { level?: Level; format?: LogFormat }): void {
  if (options.level) settings.level = options.level;
  if (options.format) settings.format = options.format;
}

const threshold = () => ORDER[process.env.IAPPS_LOG_LEVEL as Level] ?? ORDER[settings.level];

const FORMATS = new Set<LogFormat>(["json", "pretty", "auto"]);

function pretty(): boolean {
  const variable = process.env.IAPPS_LOG_FORMAT as LogFormat | undefined;
  const format = variable !== undefined && FORMATS.has(variable) ? variable : settings.format;
  if (format === "auto") return process.stderr.isTTY === true;
  return format === "pretty";
}

export function log(level: Level, message: string, fields: Record<string, unknown> = {}) {
  if (ORDER[level] < threshold()) return;
  const requestId = currentRequestId();
  const entry = { time: new Date().toISOString(), level, message, ...(requestId === undefined ? {} : { requestId }), ...fields };
  process.stderr.write(maskSecrets(pretty() ? prettyLine(entry, process.stderr.isTTY === true) : `${JSON.stringify(entry)}\n`));
}


const COLOURS: Record<Level, string> = { debug: "\x1b[2m", info: "\x1b[36m", warn: "\x1b[33m", error: "\x1b[31m" };

/** `12:04:05.123 WARN  message key=value other="two words"`: time of day, level, message, the rest. */
export function prettyLine(entry: { time: string; level: Level; message: string } & Record<string, unknown>, colour: boolean): string {
  const { time, level, message, ...fields } = entry;
  const label = level.toUpperCase().padEnd(5);
  const rest = Object.entries(fields)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `${key}=${prettyValue(value)}`)
    .join(" ");
  const head = colour ? `${COLOURS[level]}${label}\x1b[0m` : label;
  return `${time.slice(11, 23)} ${head} ${message}${rest === "" ? "" : ` ${rest}`}\n`;
}

function prettyValue(value: unknown): string {
  if (typeof value === "string") return /^[^\s"=\\\x00-\x1f]+$/.test(value) ? value : JSON.stringify(value);
  if (value instanceof Error) return JSON.stringify(value.message);
  return JSON.stringify(value) ?? String(value);
}
