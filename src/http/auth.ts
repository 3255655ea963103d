// Bearer JWTs as UCloud issues them: `sub` (username), `role` (USER, ADMIN, SERVICE), `exp`.
// HS256 with `[auth] jwt_secret` for local use, or RS256/ES256 with `[auth] jwt_public_key`.

import type { MiddlewareHandler } from "hono";
import { verify } from "hono/jwt";
import * as v from "valibot";
import { forbidden, invalidRequest, unauthorized } from "../base/errors.ts";
import { UsernameSchema } from "../domain/owner.ts";

export type Role = "USER" | "ADMIN" | "SERVICE";

/** The subject UCloud/Core signs its calls to providers with (role SERVICE). */
export const CORE_SUBJECT = "_UCloud";

export interface Principal {
  username: string;
  role: Role;
}

export interface AuthOptions {
  jwtSecret: string;
  jwtPublicKey: string;
  jwtAlgorithm: "RS256" | "ES256";
  /** The clock tokens expire by, in epoch ms. Default `Date.now`; tests move theirs forward. */
  now?: () => number;
}

// A `sub` that is a string is the token's own business; whether it can name an owner is ours
// (checked after the signature: a valid token for a name we cannot use answers 400, not 401).
const ClaimsSchema = v.object({
  sub: v.string(),
  role: v.picklist(["USER", "ADMIN", "SERVICE"]),
  exp: v.number(),
});

export type AuthVariables = { principal: Principal };

/**
 * Verifies bearer tokens, remembering the ones it verified until they expire: a signature check
 * costs more than the rest of a cached retrieve, and clients send the same token many times.
 */
export class TokenVerifier {
  private readonly verified = new Map<string, { principal: Principal; exp: number }>();
  private readonly key: string;
  private readonly algorithm: "HS256" | "RS256" | "ES256";
  private readonly now: () => number;

  constructor(
    options: AuthOptions,
    private readonly maxRemembered = 10_000,
  ) {
    [this.key, this.algorithm] = options.jwtPublicKey !== "" ? [options.jwtPublicKey, options.jwtAlgorithm] : [options.jwtSecret, "HS256"];
    this.now = options.now ?? Date.now;
  }

  async principal(token: string): Promise<Principal> {
    const now = this.now() / 1000;
    const known = this.verified.get(token);
    if (known && known.exp > now) return known.principal;
    if (known) this.verified.delete(token);
    let payload: unknown;
    try {
      payload = await verify(token, this.key, this.algorithm);
    } catch (e) {
      throw unauthorized(`Authorization: the token was refused (${(e as Error).name.replace(/^Jwt/, "")}).`);
    }
    const claims = v.safeParse(ClaimsSchema, payload);
    if (!claims.success) {
      const issue = claims.issues[0];
      throw unauthorized(`Authorization: the token's ${v.getDotPath(issue) ?? "claims"} claim is missing or invalid.`);
    }
    // `verify` checked `exp` against the system clock; this checks it against ours (the same one
    // outside tests), as hono does: expired from the second it names.
    if (claims.output.exp <= Math.floor(now)) throw unauthorized("Authorization: the token was refused (TokenExpired).");
    const username = v.safeParse(UsernameSchema, claims.output.sub);
    if (!username.success) throw invalidRequest(`sub: the token's subject cannot name an owner here: ${username.issues[0].message}.`);
    const principal = { username: username.output, role: claims.output.role };
    if (this.verified.size >= this.maxRemembered) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(token, { principal, exp: claims.output.exp });
    return principal;
  }
}

export function authenticate(verifier: TokenVerifier, allowed: readonly Role[]): MiddlewareHandler<{ Variables: AuthVariables }> {
  return async (c, next) => {
    const header = c.req.header("authorization");
    const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) throw unauthorized("Authorization: send a bearer token (Authorization: Bearer <JWT>).");
    const principal = await verifier.principal(match[1]!);
    if (!allowed.includes(principal.role)) {
      throw forbidden(`This route is for ${allowed.join(" or ")} tokens; yours has role ${principal.role}.`);
    }
    if (principal.role === "SERVICE" && principal.username !== CORE_SUBJECT) {
      throw forbidden(`SERVICE tokens are UCloud/Core's: the token's sub must be "${CORE_SUBJECT}", not "${principal.username}".`);
    }
    c.set("principal", principal);
    await next();
  };
}
