// What a Redis failure means: the errors the store raises itself, and which of those ioredis and
// the socket raise mean "Redis cannot be reached right now" or "the key's slot moved".
// Imports nothing.

export class RedisUnavailableError extends Error {
  override name = "RedisUnavailableError";
}

/** A write whose EXEC may or may not have run: its outcome could not be learned. */
export class AmbiguousCommitError extends RedisUnavailableError {
  override name = "AmbiguousCommitError";
}

/** Redis is fine, but every transaction connection of this process stayed busy: overload. */
export class PoolExhaustedError extends RedisUnavailableError {
  override name = "PoolExhaustedError";
}

/** True for errors that mean "Redis cannot be reached right now" rather than a bug. */
export function isRedisUnavailable(error: unknown): boolean {
  if (error instanceof RedisUnavailableError) return true;
  if (!(error instanceof Error)) return false;
  if (error.name === "MaxRetriesPerRequestError") return true;
  const message = error.message;
  return (
    message.includes("Connection is closed") ||
    message.includes("Stream isn't writeable") ||
    message.includes("Command timed out") ||
    message.includes("connect ECONNREFUSED") ||
    message.includes("connect ETIMEDOUT") ||
    message.includes("ECONNRESET") ||
    message.includes("EPIPE") ||
    message.includes("Failed to refresh slots cache") ||
    message.includes("Too many Cluster redirections") ||
    message.includes("Cluster isn't ready") ||
    message.includes("None of startup nodes is available") ||
    /^(LOADING|BUSY|MASTERDOWN|READONLY|TRYAGAIN|CLUSTERDOWN|NOREPLICAS)\b/.test(message)
  );
}

/**
 * A cluster's answer that the key's slot is served elsewhere now (a failover or a resharding):
 * nothing was done, and the same transaction may be tried again on the slot's new master.
 */
export function isSlotMoved(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const texts = [error.message, ...((error as { previousErrors?: Error[] }).previousErrors ?? []).map((e) => e.message)];
  return texts.some((text) => /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN|READONLY)\b/.test(text));
}
