// One attached shell session (spec §8, UCloud/IM's containers/terminal.go): the WebSocket
// protocol of `jobs.provider.<providerId>.shell` and what the session does. On `initialize` of a
// known session: open the terminal on the folder's drive (a reconnect whose lease ran out ends
// with "Your session has expired. Please open a new one."), wait with a spinner until the pod runs
// with the record's current ETag, then run /bin/bash with a TTY in `user-job` through the exec
// API; when bash exits, start another while the job lives. Input refreshes the inactivity lease
// (a resize does not); the lease running out ends the session.
// Runtime-neutral: a socket is anything with send and close. Imports valibot, src/kubernetes
// (the gateway's exec), src/reconciler/objects.ts (pod names and annotations), src/service,
// src/store/shell-sessions.ts, src/ucloud/jobs.ts and src/base/log.ts.

import * as v from "valibot";
import type { ExecProcess } from "../kubernetes/exec.ts";
import type { KubernetesGateway } from "../kubernetes/gateway.ts";
import { ANNOTATIONS, podName } from "../reconciler/objects.ts";
import type { ServiceContext } from "../service/context.ts";
import type { ShellSession } from "../store/shell-sessions.ts";
import { isFinal } from "../ucloud/jobs.ts";

export const MESSAGES = {
  preparing: "A terminal is being prepared for you...",
  expired: "Your session has expired. Please open a new one.",
  gone: "Job is no longer available. Please open a new terminal.",
  locked: (reason: string) => `Unable to open a new terminal: ${reason}.`,
  stopping: "The service is restarting. Please open the terminal again.",
} as const;

/** What a socket must do; Hono's WSContext under every runtime has both. */
export interface ShellSocket {
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface ShellLimits {
  /** A socket that has not initialized a known session by then is closed. */
  initializeTimeoutMs: number;
  /** Larger messages close the socket (1009). */
  maxMessageBytes: number;
  /** How often the session looks at the pod while preparing, and at the lease while running. */
  pollMs: number;
}

export const DEFAULT_SHELL_LIMITS: ShellLimits = { initializeTimeoutMs: 30_000, maxMessageBytes: 64 * 1024, pollMs: 250 };

const Dimension = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(9999));
const Payload = v.variant("type", [
  v.object({ type: v.literal("initialize"), sessionIdentifier: v.string(), cols: v.optional(Dimension, 80), rows: v.optional(Dimension, 24) }),
  v.object({ type: v.literal("input"), data: v.string() }),
  v.object({ type: v.literal("resize"), cols: Dimension, rows: Dimension }),
]);
const Message = v.object({ call: v.string(), streamId: v.string(), payload: Payload });

export interface ShellDependencies {
  context: ServiceContext;
  gateway: KubernetesGateway;
  limits: ShellLimits;
  log(level: "debug" | "info" | "warn", message: string, fields?: Record<string, unknown>): void;
}

/** Every attached socket of this replica: SIGTERM ends them with a message. */
export class ShellSessions {
  private readonly live = new Set<AttachedShell>();

  constructor(readonly deps: ShellDependencies) {}

  /** A new socket's handler. */
  connect(socket: ShellSocket): AttachedShell {
    const shell = new AttachedShell(this.deps, socket, () => this.live.delete(shell));
    this.live.add(shell);
    return shell;
  }

  get size(): number {
    return this.live.size;
  }

  /** Ends every session with a message (SIGTERM). */
  closeAll() {
    for (const shell of [...this.live]) shell.end(MESSAGES.stopping, 1001);
  }
}

export class AttachedShell {
  private session: ShellSession | null = null;
  private streamId = "";
  private ended = false;
  private exec: ExecProcess | null = null;
  private size = { cols: 80, rows: 24 };
  private readonly initTimer: ReturnType<typeof setTimeout>;
  private readonly decoder = new TextDecoder();
  private leaseRefresh: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly deps: ShellDependencies,
    private readonly socket: ShellSocket,
    private readonly forget: () => void,
  ) {
    this.initTimer = setTimeout(() => this.close(4000, "no session initialized"), deps.limits.initializeTimeoutMs);
  }

  /** One text message from the socket. */
  async receive(text: string) {
    if (this.ended) return;
    if (new TextEncoder().encode(text).length > this.deps.limits.maxMessageBytes) return this.close(1009, "message too large");
    let parsed: v.InferOutput<typeof Message>;
    try {
      const result = v.safeParse(Message, JSON.parse(text));
      if (!result.success) return this.close(1008, "malformed message");
      parsed = result.output;
    } catch {
      return this.close(1008, "malformed message");
    }
    const { payload } = parsed;
    if (payload.type === "initialize") {
      if (this.session !== null) return this.close(1008, "already initialized");
      this.streamId = parsed.streamId;
      this.size = { cols: payload.cols, rows: payload.rows };
      const session = await this.deps.context.shellSessions.get(payload.sessionIdentifier).catch(() => null);
      if (session === null || parsed.call !== `jobs.provider.${this.deps.context.config.ucloud.provider_id}.shell`) {
        return this.close(1008, "unknown session");
      }
      clearTimeout(this.initTimer);
      this.session = session;
      this.payload({ type: "initialize" });
      void this.run(session).catch((error) => {
        this.deps.log("warn", "shell session failed", { error: error instanceof Error ? error.message : String(error) });
        this.end("The terminal failed. Please open a new one.");
      });
      return;
    }
    if (this.session === null) return this.close(1008, "not initialized");
    if (payload.type === "input") {
      this.exec?.write(payload.data);
      this.refreshLease();
    } else {
      this.size = { cols: payload.cols, rows: payload.rows };
      this.exec?.resize(payload.cols, payload.rows);
    }
    this.payload({ type: "ack" });
  }

  /** The socket closed (by the client or by us). */
  closed() {
    clearTimeout(this.initTimer);
    this.ended = true;
    this.exec?.close();
    this.forget();
  }

  /** Ends the session with a message the user sees. */
  end(message: string, code = 1000) {
    if (this.ended) return;
    this.output(`\r\n${message}\r\n`);
    this.close(code, "session ended");
  }

  private close(code: number, reason: string) {
    if (!this.ended) {
      this.ended = true;
      try {
        this.socket.close(code, reason);
      } catch {
        // Already gone.
      }
    }
    this.closed();
  }

  private payload(payload: Record<string, unknown>) {
    if (this.ended) return;
    this.socket.send(JSON.stringify({ type: "message", streamId: this.streamId, payload }));
  }

  private output(data: string) {
    this.payload({ type: "data", data });
  }

  /** One lease refresh at a time; input arriving meanwhile is covered by the one after it. */
  private refreshLease() {
    const owner = this.session!.owner;
    this.leaseRefresh = this.leaseRefresh.then(() => this.deps.context.service.terminalActivity(owner)).catch(() => {});
  }

  private async run(session: ShellSession) {
    const { context } = this.deps;
    const owner = session.owner;
    if (session.attached && (await context.runtime.leases.remaining("terminal", owner)) === 0) return this.end(MESSAGES.expired);
    await context.shellSessions.attach(session, context.config.apps.terminal.shell_session_ttl);
    const drive = `/${session.folder.split("/").filter(Boolean)[0]}`;
    const opened = await context.service.openTerminal(owner, session.folder);
    const refused = opened.warnings.find((w) => w.startsWith(`${drive} was not added`));
    if (refused !== undefined) return this.end(MESSAGES.locked(refused.slice(refused.indexOf(": ") + 2).replace(/\.$/, "")));
    for (const warning of opened.warnings) this.output(`${warning}\r\n`);

    while (!this.ended) {
      const pod = await this.waitForPod(owner);
      if (pod === null) return;
      const exited = await this.runBash(pod);
      if (this.ended) return;
      if (exited === "lease") return this.end(MESSAGES.expired);
      // bash exited: another one while the job lives (the next wait says when it does not).
      await sleep(this.deps.limits.pollMs);
    }
  }

  /** The pod's name once it runs with the record's current ETag; null when the session ended. */
  private async waitForPod(owner: ShellSession["owner"]): Promise<string | null> {
    const { context, gateway, limits } = this.deps;
    const spinner = ["|", "/", "-", "\\"];
    let shown = false;
    for (let turn = 0; !this.ended; turn++) {
      const record = await context.store.read("terminal", owner);
      const job = record?.jobId ? await context.jobs.retrieve(record.jobId) : null;
      if (record === null || job === null || isFinal(job.state) || record.state === "detached") {
        this.end(MESSAGES.gone);
        return null;
      }
      if ((await context.runtime.leases.remaining("terminal", owner)) === 0) {
        this.end(MESSAGES.expired);
        return null;
      }
      const name = podName(record.jobId!);
      const pod = await gateway.getPod(name);
      const ready =
        pod?.status?.phase === "Running" && !pod.metadata?.deletionTimestamp && pod.metadata?.annotations?.[ANNOTATIONS.etag] === record.etag;
      if (ready) {
        if (shown) this.output("\r\x1b[2K");
        return name;
      }
      this.output(`\r${spinner[turn % spinner.length]} ${MESSAGES.preparing}`);
      shown = true;
      await sleep(limits.pollMs);
    }
    return null;
  }

  /** Runs bash until it exits ("exited") or the lease runs out ("lease"). */
  private async runBash(pod: string): Promise<"exited" | "lease"> {
    const { context, gateway, limits } = this.deps;
    const owner = this.session!.owner;
    let exec: ExecProcess;
    try {
      exec = await gateway.exec({
        pod,
        container: "user-job",
        command: ["/bin/bash"],
        cols: this.size.cols,
        rows: this.size.rows,
        onOutput: (chunk) => this.output(this.decoder.decode(chunk, { stream: true })),
      });
    } catch (error) {
      this.deps.log("debug", "exec failed; trying again", { pod, error: error instanceof Error ? error.message : String(error) });
      return "exited";
    }
    this.exec = exec;
    if (this.ended) exec.close();
    let done = false;
    const finished = exec.exited.then(() => "exited" as const);
    const leaseWatch = (async () => {
      while (!done && !this.ended) {
        await sleep(limits.pollMs);
        if ((await context.runtime.leases.remaining("terminal", owner).catch(() => 1)) === 0) return "lease" as const;
      }
      return "exited" as const;
    })();
    const outcome = await Promise.race([finished, leaseWatch]);
    done = true;
    exec.close();
    this.exec = null;
    return outcome;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
