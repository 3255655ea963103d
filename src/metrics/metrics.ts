// The service's metrics, one registry per process: under role `all` the API, the worker and the
// cache all count into it, so the API's /metrics shows everything. The parts that count import
// the metric they move from here; values that live in Redis (the queue's depth) are read at
// scrape time by src/service/health.ts. Every label takes values from a small fixed set (route
// patterns, task kinds, outcomes), never raw paths or owners, so the series stay bounded.
// Imports ./registry.ts only.

import { Registry } from "./registry.ts";

export const registry = new Registry();

export const metrics = {
  httpRequests: registry.counter("iapps_http_requests_total", "HTTP requests answered, by route pattern, method and status.", ["route", "method", "status"]),
  httpDuration: registry.histogram(
    "iapps_http_request_duration_seconds",
    "Time from a request's arrival to its answer, by route pattern, method and status.",
    ["route", "method", "status"],
  ),

  cacheHits: registry.counter("iapps_cache_hits_total", "Record reads answered from this replica's cache."),
  cacheMisses: registry.counter("iapps_cache_misses_total", "Record reads the cache could not answer while it was live (they read Redis)."),
  cacheEvictions: registry.counter("iapps_cache_evictions_total", "Cached records dropped to stay within [api] cache_max_entries and cache_max_bytes."),
  cacheInvalidations: registry.counter("iapps_cache_invalidations_total", "Invalidation messages received on iapps:invalidations."),
  cacheSuspensions: registry.counter("iapps_cache_suspensions_total", "Times the cache stopped being trusted because its subscription dropped or stopped answering."),
  cachedWrites: registry.counter(
    "iapps_cached_writes_total",
    "Writes decided on this replica's cached record, by outcome: landed in one round trip, or retried the ordinary way (the record had changed: its guard, or another writer, failed the EXEC).",
    ["outcome"],
  ),
  cacheEntries: registry.gauge("iapps_cache_entries", "Records in this replica's cache, at scrape time."),
  cacheBytes: registry.gauge("iapps_cache_bytes", "Estimated bytes of the records in this replica's cache (as [api] cache_max_bytes counts them), at scrape time."),
  cacheLive: registry.gauge("iapps_cache_subscription_live", "1 while the invalidation subscription is confirmed (the cache is used), else 0."),

  queueDepth: registry.gauge("iapps_queue_tasks", "Tasks in the queue by state, read from Redis at scrape time (absent when Redis did not answer).", ["state"]),
  scrapeErrors: registry.counter("iapps_scrape_errors_total", "Values a scrape could not read (Redis unreachable or slow); those samples are left out.", ["source"]),

  taskDuration: registry.histogram(
    "iapps_task_duration_seconds",
    "Time a task ran in this worker, by kind and outcome (done, retry, dead, lease-lost).",
    ["kind", "outcome"],
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  ),
  taskRetries: registry.counter("iapps_task_retries_total", "Failed attempts that will be retried (after a backoff, or at once when the task was added again).", ["kind"]),
  taskDeadLetters: registry.counter("iapps_task_dead_letters_total", "Tasks that ran out of attempts and became dead letters.", ["kind"]),
  taskLeasesExpired: registry.counter("iapps_task_leases_expired_total", "Tasks handed out again because their worker stopped renewing the lease."),

  reconciles: registry.counter(
    "iapps_reconcile_total",
    "Reconciles by app and outcome: in-sync, created, replaced (pod deleted), stopped, blocked, detached, pruned (part of the configuration removed), skipped, aborted, error.",
    ["app", "outcome"],
  ),

  resyncCompleted: registry.gauge(
    "iapps_resync_last_completed_timestamp_seconds",
    "When this worker last finished a periodic resync round (Unix time); absent until it has, and on workers that never held the round.",
  ),
  resyncSeconds: registry.gauge("iapps_resync_last_duration_seconds", "How long this worker's last resync round took (pacing over half the interval included)."),
  resyncBusySeconds: registry.gauge("iapps_resync_last_busy_seconds", "Of this worker's last resync round, the time it was not waiting for its pace: what it would take unpaced."),
  resyncRecords: registry.counter(
    "iapps_resync_records_total",
    "Records the resync looked at, by verdict: in-sync (no reconcile needed), enqueued (a reconcile would change something, or the check failed).",
    ["verdict"],
  ),

  coreRequests: registry.counter("iapps_core_requests_total", "Calls to UCloud/Core (mode core), by path.", ["call"]),
  coreErrors: registry.counter(
    "iapps_core_errors_total",
    "Calls to UCloud/Core that failed, by path and why: Core's HTTP status, timeout, network (no answer) or invalid (an answer that is not JSON).",
    ["call", "code"],
  ),

  kubernetesRequests: registry.counter("iapps_kubernetes_requests_total", "Kubernetes API calls, by verb and resource.", ["verb", "resource"]),
  kubernetesErrors: registry.counter(
    "iapps_kubernetes_errors_total",
    "Kubernetes API calls that failed, by verb, resource and HTTP status (network: no answer). 404 of a get or delete is among them.",
    ["verb", "resource", "code"],
  ),
} as const;
