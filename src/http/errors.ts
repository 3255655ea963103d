// Errors to HTTP answers, in one place: every error body has UCloud's shape
// `{statusCode, why, errorCode}`. Also the one place that tells a client hanging up mid-body
// apart from our own failures (each runtime reports it its own way).

import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { UnofficialStatusCode } from "hono/utils/http-status";
import { AppError, errorBody } from "../base/errors.ts";
import { REQUEST_ID_HEADER } from "../base/request-id.ts";

export function errorResponse(c: Context, error: AppError): Response {
  const headers = error.retryAfterSeconds === undefined ? undefined : { "Retry-After": String(error.retryAfterSeconds) };
  return c.json(error.toBody(), error.status as 400, headers);
}

/**
 * What errorResponse answers, for an answer built without a Hono context (public-retrieve.ts):
 * the same status, headers (set in the same order) and body.
 */
export function errorAnswer(error: AppError, requestId: string): Response {
  const headers: Record<string, string> = { [REQUEST_ID_HEADER]: requestId, "Content-Type": "application/json" };
  if (error.retryAfterSeconds !== undefined) headers["Retry-After"] = String(error.retryAfterSeconds);
  return new Response(JSON.stringify(error.toBody()), { status: error.status, headers });
}

export function toAppError(error: unknown, log?: (message: string, fields: Record<string, unknown>) => void): AppError {
  if (error instanceof AppError) return error;
  if (error instanceof HTTPException && error.status < 500) {
    return new AppError(error.status, error.status === 404 ? "NOT_FOUND" : "INVALID_REQUEST", error.message || "The request was not understood.");
  }
  log?.("unhandled error", { error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  return new AppError(500, "INTERNAL_ERROR", "Something went wrong on our side. It has been logged; try again later.");
}

/**
 * The client closed its connection before it had sent its whole body. Nothing of ours went wrong
 * and there is no one left to answer: not a 5xx, not worth more than a debug line.
 */
export class ClientClosedRequest extends Error {
  override name = "ClientClosedRequest";
}

/** nginx's status for a request whose client went away: what the request metrics count it as. */
const CLIENT_CLOSED_REQUEST_STATUS = 499;

/** The (empty) answer to a client that went away: what the request metrics count. */
export function clientClosedResponse(c: Context): Response {
  return c.body(null, CLIENT_CLOSED_REQUEST_STATUS as UnofficialStatusCode);
}

/**
 * What an error raised while reading the request body means: the error a runtime raises when the
 * connection closes under the read becomes a ClientClosedRequest; any other passes unchanged.
 * Told apart by class and code, never by message: Bun rejects with a DOMException `AbortError`,
 * Node (node:http under @hono/node-server) with an Error of code `ECONNRESET`, Deno with
 * `Deno.errors.BadResource`.
 */
export function bodyReadError(error: unknown): unknown {
  if (!connectionClosedUnderRead(error)) return error;
  return new ClientClosedRequest("the client closed the connection while sending its body", { cause: error });
}

function connectionClosedUnderRead(error: unknown): boolean {
  if (error instanceof DOMException) return error.name === "AbortError";
  if ((error as { code?: unknown } | null)?.code === "ECONNRESET") return error instanceof Error;
  const deno = (globalThis as { Deno?: { errors?: { BadResource?: new () => Error } } }).Deno;
  const BadResource = deno?.errors?.BadResource;
  return BadResource !== undefined && error instanceof BadResource;
}

/** The answer to a request no route serves: 404 NOT_FOUND naming its method and path. */
export function routeNotFound(c: Context): Response {
  const why = `There is no route ${c.req.method} ${c.req.path}. The routes are listed at /docs (and in docs/api.md).`;
  return c.json(errorBody(404, "NOT_FOUND", why), 404);
}
