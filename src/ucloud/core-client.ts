// Calls to UCloud/Core as a provider: the access token from the provider's refresh token (renewed
// shortly before it expires, one renewal per process however many calls wait for it), bounded
// calls, and Core's failures as errors the API answers 503 for and the worker retries.
// Imports src/base/errors.ts only.

import { metrics } from "../metrics/metrics.ts";
import { AppError } from "../base/errors.ts";

export type Fetch = (input: string, init: RequestInit) => Promise<Response>;

export interface CoreClientOptions {
  /** Core's base address, without a trailing slash. */
  coreUrl: string;
  refreshToken: string;
  /** How long one call may take before it counts as unanswered. */
  timeoutMs: number;
  /** Renew the access token this long before it expires. Default 3 minutes, as UCloud's IM (or half its life when shorter). */
  renewBeforeMs?: number;
  fetch?: Fetch;
  /** The clock access tokens expire by, in epoch ms. Default `Date.now`; tests move theirs forward. */
  now?: () => number;
  log?: (level: "info" | "warn", message: string, fields?: Record<string, unknown>) => void;
}

/**
 * Core could not be asked, or did not answer usably: unreachable, timed out, 5xx, or refused the
 * provider. `ambiguous`: the request may have reached Core and been acted upon.
 */
export class CoreUnavailableError extends AppError {
  constructor(
    readonly detail: string,
    readonly ambiguous: boolean,
    cause?: unknown,
    /** Core's HTTP status, when it answered. */
    readonly coreStatus: number | null = null,
  ) {
    // Clients see a plain sentence; the detail (paths, Core's own words) goes to the logs only.
    super(503, "UNAVAILABLE", "UCloud/Core cannot be reached right now; try again in a moment.", { cause: new Error(detail, { cause }) });
    this.name = "CoreUnavailableError";
    this.message = `UCloud/Core: ${detail}`;
  }
}

interface AccessToken {
  token: string;
  /** Epoch ms. */
  expiresAt: number;
  /** Epoch ms: renew from then on. */
  renewAt: number;
}

/** Access tokens without a readable `exp` are used for this long. */
const ASSUMED_TOKEN_LIFETIME_MS = 5 * 60_000;

export class CoreClient {
  private readonly fetch: Fetch;
  private readonly now: () => number;
  private current: AccessToken | null = null;
  private renewal: Promise<AccessToken> | null = null;
  /** Refresh calls made: operators and tests see that renewal is single-flight. */
  refreshCalls = 0;

  constructor(private readonly options: CoreClientOptions) {
    this.fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.now = options.now ?? Date.now;
  }

  /**
   * Calls Core and answers the decoded JSON body, or null for a 404 when `notFoundIsNull`.
   * A 401 renews the access token once and tries again (Core may have revoked it early).
   */
  async call<T>(method: "GET" | "POST", path: string, request: { query?: Record<string, string>; body?: unknown }, notFoundIsNull = false): Promise<T | null> {
    for (let attempt = 0; ; attempt++) {
      const token = await this.accessToken();
      const response = await this.send(method, path, token.token, request);
      if (response.status === 401 && attempt === 0) {
        await response.body?.cancel().catch(() => {});
        if (this.current === token) this.current = null;
        continue;
      }
      if (response.status === 404 && notFoundIsNull) {
        await response.body?.cancel();
        return null;
      }
      return (await this.decode(method, path, response)) as T;
    }
  }

  /** A valid access token: the current one, or one renewal shared by every caller waiting for it. */
  async accessToken(): Promise<AccessToken> {
    const now = this.now();
    const current = this.current;
    if (current && now < current.renewAt) return current;
    this.renewal ??= this.renew().finally(() => {
      this.renewal = null;
    });
    try {
      return await this.renewal;
    } catch (e) {
      // Renewal failed but the token still has life in it: use it, and try again next time.
      if (current && this.now() < current.expiresAt - 1000) {
        this.options.log?.("warn", "could not renew the UCloud/Core access token; using the current one", { error: String(e) });
        return current;
      }
      throw e;
    }
  }

  private async renew(): Promise<AccessToken> {
    this.refreshCalls++;
    const response = await this.send("POST", "/auth/providers/refresh", null, { body: { items: [{ refreshToken: this.options.refreshToken }] } });
    const body = (await this.decode("POST", "/auth/providers/refresh", response)) as { responses?: { accessToken?: unknown }[] } | null;
    const token = body?.responses?.[0]?.accessToken;
    if (typeof token !== "string" || token === "") {
      throw new CoreUnavailableError("its answer to /auth/providers/refresh has no accessToken", false);
    }
    const now = this.now();
    const expiresAt = expiryOf(token) ?? now + ASSUMED_TOKEN_LIFETIME_MS;
    const life = Math.max(0, expiresAt - now);
    const renewBefore = Math.min(this.options.renewBeforeMs ?? 180_000, life / 2);
    this.current = { token, expiresAt, renewAt: expiresAt - renewBefore };
    this.options.log?.("info", "renewed the UCloud/Core access token", { expiresAt: new Date(expiresAt).toISOString() });
    return this.current;
  }

  private async send(
    method: "GET" | "POST",
    path: string,
    accessToken: string | null,
    { query, body }: { query?: Record<string, string>; body?: unknown },
  ): Promise<Response> {
    const url = `${this.options.coreUrl}${path}${query ? `?${new URLSearchParams(query)}` : ""}`;
    metrics.coreRequests.inc({ call: path });
    const headers: Record<string, string> = { accept: "application/json" };
    if (accessToken !== null) headers.authorization = `Bearer ${accessToken}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    try {
      return await this.fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
    } catch (e) {
      const timedOut = (e as Error)?.name === "TimeoutError" || (e as Error)?.name === "AbortError";
      // A refused connection never reached Core; anything else (timeout, reset) may have.
      const refused = /ECONNREFUSED|ConnectionRefused|Unable to connect/i.test(String((e as { code?: string })?.code ?? "") + String(e));
      metrics.coreErrors.inc({ call: path, code: timedOut ? "timeout" : "network" });
      throw new CoreUnavailableError(
        timedOut ? `${method} ${path} had no answer within ${this.options.timeoutMs} ms` : `${method} ${path}: ${(e as Error)?.message ?? e}`,
        !refused,
        e,
      );
    }
  }

  private async decode(method: string, path: string, response: Response): Promise<unknown> {
    let text: string;
    try {
      text = await response.text();
    } catch (e) {
      metrics.coreErrors.inc({ call: path, code: "network" });
      throw new CoreUnavailableError(`${method} ${path}: the answer was cut off`, true, e);
    }
    if (!response.ok) metrics.coreErrors.inc({ call: path, code: String(response.status) });
    if (response.status >= 500) throw new CoreUnavailableError(`${method} ${path} answered ${response.status}`, true, undefined, response.status);
    if (!response.ok) {
      // Core refused the provider itself (bad refresh token, unknown job shape): an operator's
      // problem, not the client's, and not something a retry of the same call fixes quickly.
      throw new CoreUnavailableError(`${method} ${path} answered ${response.status}: ${text.slice(0, 300)}`, false, undefined, response.status);
    }
    if (text === "") return null;
    try {
      return JSON.parse(text);
    } catch (e) {
      metrics.coreErrors.inc({ call: path, code: "invalid" });
      throw new CoreUnavailableError(`${method} ${path} answered something that is not JSON`, true, e);
    }
  }
}

/** The `exp` of a JWT, in epoch ms, read without verifying it (Core verifies its own tokens). */
function expiryOf(jwt: string): number | null {
  const payload = jwt.split(".")[1];
  if (payload === undefined) return null;
  try {
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { exp?: unknown };
    return typeof claims.exp === "number" && Number.isFinite(claims.exp) ? claims.exp * 1000 : null;
  } catch {
    return null;
  }
}
