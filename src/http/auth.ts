// Bearer JWTs as UCloud issues them: `sub` (username), `role` (USER, ADMIN, SERVICE), `exp`.
// HS256 with `[auth] jwt_secret` for local use, or RS256/ES256 with `[auth] jwt_public_key`.

import type { Context } from "hono";
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

/** The Authorization header of a bearer token. */
const BEARER = /^Bearer\s+(\S+)\s*$/i;

/**
 * Verifies bearer tokens, remembering the Authorization headers it verified until their tokens
 * expire: a signature check costs more than the rest of a cached retrieve, and clients send the
 * same header many times. The remembered header is the first thing it looks at.
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

  /** The principal of an Authorization header (null: none sent); a promise only when it must be verified now. */
  principalOf(authorization: string | null): Principal | Promise<Principal> {
    return this.remembered(authorization) ?? this.verify(authorization);
  }

  /** The principal of an Authorization header verified before whose token has not expired; else undefined. */
  remembered(authorization: string | null): Principal | undefined {
    if (authorization === null) return undefined;
    const known = this.verified.get(authorization);
    return known !== undefined && known.exp > this.now() / 1000 ? known.principal : undefined;
  }

  private async verify(authorization: string | null): Promise<Principal> {
    const match = authorization === null ? null : BEARER.exec(authorization);
    if (authorization === null || !match) throw unauthorized("Authorization: send a bearer token (Authorization: Bearer <JWT>).");
    const now = this.now() / 1000;
    this.verified.delete(authorization); // expired, if it was there
    let payload: unknown;
    try {
      payload = await verify(match[1]!, this.key, this.algorithm);
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
    this.verified.set(authorization, { principal, exp: claims.output.exp });
    return principal;
  }
}

/**
 * Who may call a family's routes: a verified token of one of `allowed` roles (and a SERVICE token
 * only as UCloud/Core). Sets the request's `principal`. Answers at once (no promise) for a header
 * verified before: the common case, and the one a cached retrieve should not wait a turn for.
 */
export function authenticate(verifier: TokenVerifier, allowed: readonly Role[]) {
  const admit = (c: Context<{ Variables: AuthVariables }>, principal: Principal): void => {
    if (!admits(allowed, principal)) refuse(allowed, principal);
    c.set("principal", principal);
  };
  return (c: Context<{ Variables: AuthVariables }>): Promise<void> | undefined => {
    const principal = verifier.principalOf(c.req.raw.headers.get("authorization"));
    if (principal instanceof Promise) return principal.then((verified) => admit(c, verified));
    admit(c, principal);
    return undefined;
  };
}

/** Whether routes for `allowed` roles admit `principal` (authenticate answers 403 where not). */
export function admits(allowed: readonly Role[], principal: Principal): boolean {
  return allowed.includes(principal.role) && (principal.role !== "SERVICE" || principal.username === CORE_SUBJECT);
}

/** The 403 of a principal that `allowed` does not admit. */
function refuse(allowed: readonly Role[], principal: Principal): never {
  if (!allowed.includes(principal.role)) {
    throw forbidden(`This route is for ${allowed.join(" or ")} tokens; yours has role ${principal.role}.`);
  }
  throw forbidden(`SERVICE tokens are UCloud/Core's: the token's sub must be "${CORE_SUBJECT}", not "${principal.username}".`);
}
