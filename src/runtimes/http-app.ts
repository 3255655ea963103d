// The HTTP app of a service context, with the auth settings checked. Runtime-neutral: it answers
// `fetch(Request)`; src/runtimes/api.ts builds it for every runtime's adapter (bun.ts, deno.ts,
// node.ts).

import { type Config, settingName } from "../settings/config.ts";
import { log } from "../base/log.ts";
import type { ServiceContext } from "../service/context.ts";
import { opsFor } from "../service/health.ts";
import { createHttpApp } from "../http/app.ts";

/** `now`: the clock tokens expire by (epoch ms), for tests. Default `Date.now`. */
export function httpAppFor(context: ServiceContext, now?: () => number) {
  const { config } = context;
  return createHttpApp({
    service: context.service,
    auth: { ...authOptions(config), now },
    providerId: config.ucloud.provider_id,
    apps: context.apps,
    bodyLimit: config.api.body_limit,
    log: (level, message, fields) => log(level, message, fields),
    ops: opsFor(context),
  });
}

export function authOptions(config: Config) {
  if (config.auth.jwt_secret === "" && config.auth.jwt_public_key === "") {
    throw new Error(
      `no JWT key, so no request could be authenticated: set ${settingName("auth.jwt_public_key")} (RS256/ES256, the key UCloud signs with), or ${settingName("auth.jwt_secret")} (HS256, local use)`,
    );
  }
  return {
    jwtSecret: config.auth.jwt_secret,
    jwtPublicKey: config.auth.jwt_public_key,
    jwtAlgorithm: config.auth.jwt_algorithm,
  };
}
