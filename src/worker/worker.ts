// The worker: takes tasks from the queue and calls the task handlers (the reconciler) for them,
// at most `concurrency` at once, renewing each task's lease while it runs. It also promotes due
// retries, hands out tasks whose lease expired, and runs the periodic resync. A task its watch
// events ask for it claims at once when it has room (`offer`), and a task added again while it
// ran it runs again at once (the queue keeps it under a new lease). Whatever Redis
// does, the loop keeps going: errors are logged and retried, never thrown out of the worker.
// A task runs with the id of the request that added it as the current request id, so its log
// lines (the reconciler's too) carry it; its duration and outcome go to the metrics.
//
// Imports src/queue, the connection types of src/store/connections.ts, src/base/request-id.ts,
// src/metrics and src/worker/*.

import { randomBytes } from "node:crypto";
import type { CommandConnection, RedisClient } from "../store/connections.ts";
import type { Lease, TaskQueue } from "../queue/queue.ts";
import { parseTaskId, taskId } from "../queue/tasks.ts";
import { metrics } from "../metrics/metrics.ts";
import { withRequestId } from "../base/request-id.ts";
import { requeueAfter, type TaskHandlers } from "./handlers.ts";
import { type PassCheck, resyncOnce } from "./resync.ts";

export interface WorkerOptions {
  queue: TaskQueue;
  /** The shared command connection, once ready. */
  redis: CommandConnection;
  /** A connection of the worker's own, for the blocking wait on the wake-up list. */
  blocking: RedisClient;
  handlers: TaskHandlers;
  concurrency: number;
  leaseMs: number;
  resyncIntervalMs: number;
  /** `[api] audit_max_length`, for the audit entries the resync relays from outboxes. */
  auditMaxLength?: number;
  /** What the resync checks records with before it enqueues them (without: every record, every pass). */
  check?: PassCheck;
  log: (level: "debug" | "info" | "warn" | "error", message: string, fields?: Record<string, unknown>) => void;
}

/**
 * How often a worker promotes due retries and reaps expired leases: 4 Redis commands each time,
 * busy or idle (at 10 a second that was a fifth of what 2,000 idle records cost Redis per pass).
 */
const MAINTENANCE_MS = 250;

export class Worker {
  readonly id = `${process.pid}-${randomBytes(4).toString("hex")}`;
  private readonly inFlight = new Map<string, Promise<void>>();
  private stopping = false;
  private takes = 0;
  /** Claims sent and not yet answered (`offer`). */
  private claiming = 0;
  private loop: Promise<void> | null = null;
  private timers: Timer[] = [];
  private slotFreed: (() => void) | null = null;

  constructor(private readonly options: WorkerOptions) {}

  start(): void {
    const { options } = this;
    this.loop = this.run();
    this.timers.push(setInterval(() => void this.maintain(), MAINTENANCE_MS));
    let lastCount = 0;
    const resync = (atStart: boolean) =>
      resyncOnce(options.redis, options.queue, options.resyncIntervalMs, this.id, {
        atStart,
        spreadMs: atStart ? 0 : options.resyncIntervalMs / 2,
        lastCount,
        auditMaxLength: options.auditMaxLength,
        check: options.check,
      }).then(
        (pass) => {
          if (pass === null) return;
          lastCount = pass.records;
          metrics.resyncCompleted.set({}, Date.now() / 1000);
          metrics.resyncSeconds.set({}, pass.seconds);
          metrics.resyncBusySeconds.set({}, pass.busySeconds);
          metrics.resyncRecords.inc({ verdict: "in-sync" }, pass.records - pass.enqueued);
          metrics.resyncRecords.inc({ verdict: "enqueued" }, pass.enqueued);
          const fields = { records: pass.records, enqueued: pass.enqueued, seconds: pass.seconds, busySeconds: pass.busySeconds, why: Object.fromEntries(pass.reasons) };
          if (pass.failed > 0) options.log("warn", "resync: some checks failed; their records were enqueued", { ...fields, failed: pass.failed, error: pass.firstError });
          else options.log("debug", atStart ? "resync as the worker starts" : "resync", fields);
        },
        (e) => options.log("warn", "resync failed; the next one will try again", { error: String(e) }),
      );
    void resync(true);
    this.timers.push(setInterval(() => void resync(false), options.resyncIntervalMs));
    options.log("info", "worker started", { worker: this.id, concurrency: options.concurrency });
  }

  /** Stops taking tasks and waits (up to `timeoutMs`) for those in flight. True when all finished. */
  async stop(timeoutMs: number): Promise<boolean> {
    this.stopping = true;
    for (const timer of this.timers) clearInterval(timer);
    this.options.blocking.disconnect();
    this.slotFreed?.();
    await this.loop;
    const drained = await Promise.race([
      Promise.all(this.inFlight.values()).then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), timeoutMs)),
    ]);
    if (!drained) {
      this.options.log("warn", "stopped with tasks still running; their leases expire and another worker takes them", {
        tasks: [...this.inFlight.keys()],
      });
    }
    return drained;
  }

  private async run(): Promise<void> {
    const { queue, concurrency, leaseMs, log } = this.options;
    let failures = 0;
    while (!this.stopping) {
      const free = concurrency - this.inFlight.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.slotFreed = resolve));
        continue;
      }
      try {
        const { leases, drained } = await queue.takeSome(free, leaseMs, `${this.id}:${++this.takes}`);
        failures = 0;
        for (const lease of leases) this.process(lease);
        // Nothing left pending: a take now would find nothing; a task made pending since comes
        // with a wake-up token, so wait for one (issue 13: an empty take was 4 commands a task).
        if (drained) await queue.waitForWork(this.options.blocking, 1000);
      } catch (e) {
        if (this.stopping) break;
        failures++;
        if (failures === 1) log("warn", "cannot take tasks; retrying", { error: String(e) });
        await sleep(Math.min(50 * 2 ** failures, 2000));
      }
    }
  }

  /**
   * Puts a task of the worker's own making on the queue (a watch event's reconcile), taking it
   * at once when it is neither pending nor running and this worker has room for it (the queue's
   * claim: the lease, the tag and an expired lease's hand-over as for a take); else it is added
   * for whichever worker takes it. Errors are the caller's (the resync converges meanwhile).
   */
  async offer(id: string): Promise<void> {
    const { queue, concurrency, leaseMs } = this.options;
    // Claims still in flight count as running: events in one round trip must not overrun `concurrency`.
    if (this.stopping || this.inFlight.size + this.claiming >= concurrency || this.inFlight.has(id)) {
      await queue.add(id);
      return;
    }
    this.claiming++;
    let lease: Lease | null;
    try {
      lease = await queue.claim(id, leaseMs, `${this.id}:${++this.takes}:1`);
    } finally {
      this.claiming--;
    }
    // Stopping meanwhile, the task runs anyway (the lease is ours), as a taken one does.
    if (lease !== null) this.process(lease);
  }

  private process(lease: Lease) {
    const task = this.execute(lease).finally(() => {
      this.inFlight.delete(lease.id);
      const wake = this.slotFreed;
      this.slotFreed = null;
      wake?.();
    });
    this.inFlight.set(lease.id, task);
  }

  /** Runs a task, and once more at once for as long as it was added again while it ran. */
  private async execute(lease: Lease): Promise<void> {
    for (let next: Lease | null = lease; next !== null; ) {
      const current: Lease = next;
      next = await withRequestId(current.requestId, () => this.runTask(current));
    }
  }

  /** One run of a task and its outcome reported; the lease to run it once more under, or null. */
  private async runTask(lease: Lease): Promise<Lease | null> {
    const { queue, handlers, leaseMs, log } = this.options;
    const task = parseTaskId(lease.id);
    const kind = task?.kind ?? "unknown";
    const started = performance.now();
    // A task whose lease is gone (or could not be renewed for as long as a lease lasts) may be
    // running on another worker already: the handler is told to stop at its next step.
    const abort = new AbortController();
    let renewedAt = Date.now();
    const renewal = setInterval(() => {
      queue.renew(lease, leaseMs).then(
        (held) => {
          if (held) {
            renewedAt = Date.now();
          } else if (!abort.signal.aborted) {
            log("warn", "lost the lease of a running task; stopping it", { task: lease.id });
            abort.abort(new Error("the task's lease was lost"));
          }
        },
        () => {
          if (Date.now() - renewedAt >= leaseMs && !abort.signal.aborted) abort.abort(new Error("the task's lease could not be renewed"));
        },
      );
    }, leaseMs / 3);
    let error: string | null = null;
    try {
      if (!task) throw new Error(`not a task id: ${lease.id}`);
      const delay = requeueAfter(await handlers[task.kind](task.app, task.owner, abort.signal));
      // The handler's "run me again after" (a lease running out): the queue keeps one such task.
      if (delay !== null) await queue.addAfter(taskId("reconcile", task.app, task.owner), delay);
    } catch (e) {
      error = e instanceof Error ? e.message : String(e);
    } finally {
      clearInterval(renewal);
    }
    const seconds = (performance.now() - started) / 1000;
    // Reporting the outcome must reach Redis; until the lease runs out, keep trying.
    const deadline = Date.now() + leaseMs;
    // Added again while it ran: this worker runs it again at once, unless it is stopping. One
    // token for every attempt, so that a retry whose first reply was lost finds its own rerun.
    const rerun = this.stopping ? undefined : { leaseMs, token: `${this.id}:${++this.takes}:1` };
    for (let attempt = 0; ; attempt++) {
      try {
        if (error === null) {
          const { held, rerun: again } = await queue.finish(lease, rerun);
          metrics.taskDuration.observe({ kind, outcome: held ? "done" : "lease-lost" }, seconds);
          log("debug", "task done", { task: lease.id, seconds, ...(again ? { again: true } : {}) });
          return again;
        } else {
          const outcome = await queue.fail(lease, error);
          const counted = outcome === "dead" ? "dead" : outcome === "lease-lost" ? "lease-lost" : "retry";
          metrics.taskDuration.observe({ kind, outcome: counted }, seconds);
          if (counted === "retry") metrics.taskRetries.inc({ kind });
          if (counted === "dead") metrics.taskDeadLetters.inc({ kind });
          log(outcome === "dead" ? "error" : "warn", "task failed", { task: lease.id, error, outcome });
        }
        return null;
      } catch (e) {
        if (Date.now() > deadline) {
          log("error", "could not report a task's outcome; it will run again when its lease expires", { task: lease.id, error: String(e) });
          return null;
        }
        await sleep(Math.min(50 * 2 ** attempt, 1000));
      }
    }
  }

  private maintaining = false;

  private async maintain() {
    if (this.maintaining || this.stopping) return;
    this.maintaining = true;
    try {
      const { expired, buried } = await this.options.queue.promote();
      if (expired > 0) metrics.taskLeasesExpired.inc({}, expired);
      for (const id of buried) metrics.taskDeadLetters.inc({ kind: parseTaskId(id)?.kind ?? "unknown" });
      if (expired > 0) this.options.log("warn", "handed out again tasks whose lease expired", { tasks: expired });
    } catch {
      // Redis unreachable: the run loop reports it; maintenance resumes with it.
    } finally {
      this.maintaining = false;
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
