// Service instances for tests: each one a real service context (its own Redis connections and
// pool) and its Hono app, against the test Redis. Requests go through `app.request`, the same
// fetch handler the server runs.

import { sign } from "hono/jwt";
import { resolveConfig, type Config } from "../../src/settings/config.ts";
import { httpAppFor } from "../../src/runtimes/http-app.ts";
import { type ContextOptions, createContext, type ServiceContext } from "../../src/service/context.ts";
import type { Owner } from "../../src/domain/owner.ts";
import { eventually } from "./eventually.ts";
import { redisEnvironment } from "./redis-server.ts";

export const SECRET = "test-secret-0123456789abcdef";

export interface Instance {
  context: ServiceContext;
  request(path: string, init?: RequestInit): Promise<Response>;
  /** Empties the replica cache: for tests that FLUSHALL behind its back. */
  forgetCache(): void;
  close(): Promise<void>;
}

/** Waits until the instance's cache subscription is confirmed (no-op with the cache off). */
export async function cacheLive(instance: Instance, seconds = 10) {
  const { subscriber } = instance.context;
  if (subscriber) await eventually(() => subscriber.live, seconds, "the cache subscription comes up", 10);
}

export function testConfig(redisUrl: string, overrides: Record<string, unknown> = {}): Config {
  const raw = { redis: { url: redisUrl }, auth: { jwt_secret: SECRET }, ...overrides };
  // Against a test cluster (IAPPS_TEST_REDIS=cluster) the seed nodes come from the environment.
  return resolveConfig(raw, { source: "test", environment: redisEnvironment() });
}

/** A service context's options; `now` is the instance's clock (tokens, Core's access token). */
export type InstanceOptions = ContextOptions;

export function startInstance(redisUrl: string, overrides: Record<string, unknown> = {}, options: InstanceOptions = {}): Instance {
  const context = createContext(testConfig(redisUrl, overrides), options);
  const app = httpAppFor(context, options.now);
  return {
    context,
    request: async (path, init) => app.request(path, init),
    forgetCache: () => context.cache?.clear(),
    close: () => context.close(),
  };
}

export async function token(sub: string, role: "USER" | "ADMIN" | "SERVICE" = "USER", extra: Record<string, unknown> = {}) {
  return sign({ sub, role, exp: Math.floor(Date.now() / 1000) + 3600, ...extra }, SECRET, "HS256");
}

const service = token("_UCloud", "SERVICE");

/** Calls a provider route (`/ucloud/k8s/iapps/<app>/<op>`) with a service token. */
export async function providerCall(instance: Instance, app: string, op: string, body: unknown, headers: Record<string, string> = {}) {
  return instance.request(`/ucloud/k8s/iapps/${app}/${op}`, {
    method: "POST",
    headers: { authorization: `Bearer ${await service}`, "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** Calls a public route as `user`. */
export async function publicCall(
  instance: Instance,
  user: string,
  method: "GET" | "POST",
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
) {
  return instance.request(`/api/iapps/${path}`, {
    method,
    headers: { authorization: `Bearer ${await token(user)}`, "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
}

export const alice: Owner = { createdBy: "alice", project: null };

export const DEVICE_A = "P56IOI7-MZJNU2Y-IQGDREY-DM2MGTI-MGL3BXN-PQ6W5BM-TBBZ4TJ-XZWICQ2";
export const DEVICE_B = "MFZWI3D-BONSGYC-YLTMRWG-C43ENR5-QXGZDMM-FZWI3DP-BONSGYY-LTMRWAD";

export function syncthingConfig(n = 0) {
  return { folders: [{ ucloudPath: `/home-alice/folder-${n}`, id: `f${n}` }], devices: [{ deviceId: DEVICE_A, label: "laptop" }] };
}
