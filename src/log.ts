// One-line JSON logs on stderr (readable with `jq`); `IAPPS_LOG_LEVEL=warn` quiets them.

type Level = "debug" | "info" | "warn" | "error";
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Read at each call, so a script or test may set the level after importing this module. */
const threshold = () => ORDER[process.env.IAPPS_LOG_LEVEL as Level] ?? ORDER.info;

export function log(level: Level, message: string, fields: Record<string, unknown> = {}) {
  if (ORDER[level] < threshold()) return;
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, message, ...fields })}\n`);
}

export type Logger = typeof log;
