// What a Redis failure means: the errors the store raises itself, and which of those ioredis and
// the socket raise mean "Redis cannot be reached right now" or "the key's slot moved". Told by
// class (ioredis' error classes, from its redis-errors package), by code (the Redis error code that
// opens an error reply, a socket's error code), and only where ioredis gives neither by the start
// of its message, from one table.
// Imports redis-errors (ioredis' error classes) only.

/// <reference path="./untyped-modules.d.ts" />
import redisErrors from "redis-errors";

const { RedisError, ReplyError } = redisErrors;

export class RedisUnavailableError extends Error {
  override name = "RedisUnavailableError";
}

/** Redis did not answer within `[redis] command_timeout` (the connection was closed for it). */
export class RedisTimeoutError extends RedisUnavailableError {
  override name = "RedisTimeoutError";
}

/** A write whose EXEC may or may not have run: its outcome could not be learned. */
export class AmbiguousCommitError extends RedisUnavailableError {
  override name = "AmbiguousCommitError";
}

/** Redis is fine, but every transaction connection of this process stayed busy: overload. */
export class PoolExhaustedError extends RedisUnavailableError {
  override name = "PoolExhaustedError";
}

/**
 * Redis error codes (the first word of an error reply) that mean the server is there but cannot
 * serve now: loading its data, busy with a script, its master or replicas gone, demoted to a
 * replica, or its cluster without a quorum or mid-migration.
 */
const UNAVAILABLE_REPLY_CODES = new Set(["LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS"]);

/** Redis error codes that mean the key's slot is served by another node now, or is being moved there. */
const SLOT_MOVED_REPLY_CODES = new Set(["MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "READONLY"]);

/** Socket error codes (Node's `error.code`) of a connection refused, timed out or broken. */
const CONNECTION_ERROR_CODES = new Set(["ECONNREFUSED", "ETIMEDOUT", "ECONNRESET", "EPIPE"]);

/**
 * ioredis' failures of the connection that it raises as plain `Error`s, with neither a class nor
 * a code of their own (ioredis 5: Redis.js, cluster/index.js, Command.js): the only way to tell
 * them is the start of their message. Everything else is told by class or code.
 */
const IOREDIS_PLAIN_CONNECTION_ERRORS = [
  "Connection is closed.", // the connection ended (no more retries) or closed under the command
  "Stream isn't writeable", // the socket is gone and the offline queue is off
  "Command timed out", // commandTimeout
  "Too many Cluster redirections", // MOVED/ASK followed maxRedirections times, or no node reachable meanwhile
  "Cluster isn't ready", // the cluster client has no slot map and the offline queue is off
  "None of startup nodes is available", // not one seed answered
];

/** The Redis error code of an error reply (`LOADING`, `MOVED`, ...), or null for any other error. */
export function replyCodeOf(error: unknown): string | null {
  if (!(error instanceof ReplyError)) return null;
  return error.message.split(" ", 1)[0] ?? null;
}

/** True for errors that mean "Redis cannot be reached right now" rather than a bug. */
export function isRedisUnavailable(error: unknown): boolean {
  if (error instanceof RedisUnavailableError) return true;
  if (error instanceof ReplyError) return UNAVAILABLE_REPLY_CODES.has(replyCodeOf(error) ?? "");
  // Every other error of ioredis' own classes is about the connection, not the command: a command
  // aborted by a close (AbortError, MaxRetriesPerRequestError), no node that answered for the slot
  // map (ClusterAllFailedError), a garbled reply stream (ParserError).
  if (error instanceof RedisError) return true;
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && CONNECTION_ERROR_CODES.has(code)) return true;
  return IOREDIS_PLAIN_CONNECTION_ERRORS.some((start) => error.message.startsWith(start));
}

/**
 * A cluster's answer that the key's slot is served elsewhere now (a failover or a resharding):
 * nothing was done, and the same transaction may be tried again on the slot's new master. An
 * aborted MULTI (EXECABORT) carries the replies that aborted it as `previousErrors`.
 */
export function isSlotMoved(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const replies = [error, ...((error as { previousErrors?: unknown[] }).previousErrors ?? [])];
  return replies.some((reply) => SLOT_MOVED_REPLY_CODES.has(replyCodeOf(reply) ?? ""));
}
