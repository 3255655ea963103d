// Bearer JWTs as UCloud issues them: `sub` (username), `role` (USER, ADMIN, SERVICE), `exp`.
// HS256 with `[auth] jwt_secret` for local use, or RS256/ES256 with `[auth] jwt_public_key`.

import type { MiddlewareHandler } from "hono";
import { verify } from "hono/jwt";
import * as v from "valibot";
import { forbidden, unauthorized } from "../errors.ts";
import { UsernameSchema } from "../service/owner.ts";

export type Role = "USER" | "ADMIN" | "SERVICE";

export interface Principal {
  username: string;
  role: Role;
}

export interface AuthOptions {
  jwtSecret: string;
  jwtPublicKey: string;
  jwtAlgorithm: "RS256" | "ES256";
}

const ClaimsSchema = v.object({
  sub: UsernameSchema,
  role: v.picklist(["USER", "ADMIN", "SERVICE"]),
  exp: v.number(),
});

export type AuthVariables = { principal: Principal };

export function authenticate(options: AuthOptions, allowed: readonly Role[]): MiddlewareHandler<{ Variables: AuthVariables }> {
  const [key, algorithm] =
    options.jwtPublicKey !== "" ? [options.jwtPublicKey, options.jwtAlgorithm] : [options.jwtSecret, "HS256" as const];
  return async (c, next) => {
    const header = c.req.header("authorization");
    const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) throw unauthorized("Authorization: send a bearer token (Authorization: Bearer <JWT>).");
    let payload: unknown;
    try {
      payload = await verify(match[1]!, key, algorithm);
    } catch (e) {
      throw unauthorized(`Authorization: the token was refused (${(e as Error).name.replace(/^Jwt/, "")}).`);
    }
    const claims = v.safeParse(ClaimsSchema, payload);
    if (!claims.success) {
      const issue = claims.issues[0];
      throw unauthorized(`Authorization: the token's ${v.getDotPath(issue) ?? "claims"} claim is missing or invalid.`);
    }
    if (!allowed.includes(claims.output.role)) {
      throw forbidden(`This route is for ${allowed.join(" or ")} tokens; yours has role ${claims.output.role}.`);
    }
    c.set("principal", { username: claims.output.sub, role: claims.output.role });
    await next();
  };
}
