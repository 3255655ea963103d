// The request id of the work in progress: set by the HTTP layer for each request, stored with
// the task the request enqueues (src/store/outbox.ts), and set again by the worker around the
// task's run, so that every log line of the request, its task and the reconcile it causes
// carries the same id (src/base/log.ts adds it). Carried in an AsyncLocalStorage (node:async_hooks,
// which Bun, Deno and Node all provide) rather than passed through every call, so the service
// layer between the HTTP handler and the store needs no parameter for it.
// Imports node:async_hooks and node:crypto only.

import { AsyncLocalStorage } from "node:async_hooks";
import { randomBytes } from "node:crypto";

const current = new AsyncLocalStorage<string>();

/** The header a request id comes in and goes out in. */
export const REQUEST_ID_HEADER = "X-Request-Id";

/** Ids a client (or a proxy in front) may choose: short, and safe in a log, a header and Redis. */
const SANE = /^[A-Za-z0-9._:-]{1,128}$/;

/** The client's id when it is sane, else a fresh one: a client cannot put just anything into our logs. */
export function requestIdFrom(header: string | undefined | null): string {
  return header !== undefined && header !== null && SANE.test(header) ? header : newRequestId();
}

/** A random prefix per process and a counter: unique across replicas, without random bytes per request. */
const PROCESS_PREFIX = randomBytes(9).toString("base64url");
let issued = 0;

export function newRequestId(): string {
  return `${PROCESS_PREFIX}-${(++issued).toString(36)}`;
}

/** Runs `fn` with `id` as the current request id (or as it is, when there is none). */
export function withRequestId<T>(id: string | undefined, fn: () => T): T {
  return id === undefined || id === "" ? fn() : current.run(id, fn);
}

export function currentRequestId(): string | undefined {
  return current.getStore();
}
