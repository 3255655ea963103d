// The API's entry module for every runtime, runtime-neutral. Its default export `{ fetch }` is
// the shape `deno serve` and `bun` serve when handed a module, and what the adapters serve:
//
//   bun src/main.ts api                     Bun.serve (src/runtimes/bun.ts), SIGTERM drains
//   deno serve ... src/runtimes/deno.ts        this export, plus the SIGTERM part Deno leaves to us
//   tsx src/runtimes/node.ts                   Node with @hono/node-server, SIGTERM drains
//   bun src/runtimes/serve.ts / deno serve src/runtimes/serve.ts   this file alone: serves, but SIGTERM does not
//                                           close Redis (Bun stops at once; Deno keeps running)
//
// It takes no arguments: the configuration comes from IAPPS_CONFIG (else ./config.toml), the
// overlay from IAPPS_ENV, and IAPPS_<SECTION>_<KEY> as always (src/settings/config.ts).

import { type Config, ConfigError, configSource, loadConfig } from "../settings/config.ts";
import { maskSecrets } from "../base/secrets.ts";
import { type Api, createApi } from "./api.ts";

function startApi(): Api {
  let config: Config;
  try {
    config = loadConfig(configSource());
    return createApi(config);
  } catch (e) {
    // A bad configuration is the operator's to fix: say what, not where in our code.
    process.stderr.write(`${maskSecrets(e instanceof ConfigError ? e.message : (e as Error).message)}\n`);
    process.exit(2);
  }
}

export const api = startApi();

export default {
  fetch: api.fetch,
  // Read by `bun` (Bun.serve options); `deno serve` takes its --port and --host instead.
  port: api.config.server.port,
  hostname: api.config.server.host,
};
