// The simulator's `pods/<name>/exec`: runs the command for real, in a bubblewrap sandbox shaped
// like the pod's container, and speaks the Kubernetes WebSocket channel protocol
// (`v5.channel.k8s.io`, or `v4.channel.k8s.io`) that client-node's `Exec` and kubectl use.
// A development convenience: in kubeconfig and in-cluster modes the kubelet does this.
//
// The protocol: every binary frame starts with its channel, 0 stdin, 1 stdout, 2 stderr,
// 3 the status (a `Status` object, once, at the end), 4 resize (`{"Width", "Height"}`), and in v5
// 255 "close channel <n>" (so that stdin can end without closing the socket).
//
// The sandbox (`bwrap`): the host's /usr and /etc read-only (the image is not pulled: the host
// is the image), a fresh /proc, /dev and /tmp, the root itself read-only, every namespace of its own (no network), uid and
// gid 1000, the container's working directory. Each volume mount of the container whose volume is
// a hostPath is bound at its mount path, read-only where the mount says so, its `subPath`
// resolved from the hostPath with the storage model's walk, which follows no symbolic link
// (src/base/directory.ts); the open directory itself is handed to bwrap (`--bind-fd`), so a link
// swapped in afterwards changes nothing. The process dies with the pod (deleted, or replaced), with
// the socket, and with the simulator.
// Imports src/base/directory.ts and ./objects.ts, ./state.ts, ./status.ts.

import type { Server, ServerWebSocket, Subprocess } from "bun";
import { Directory } from "../../base/directory.ts";
import { isRecord } from "./objects.ts";
import type { ClusterState } from "./state.ts";
import type { ResourceType } from "./resources.ts";
import { badRequest, KubeStatusError } from "./status.ts";

const PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"] as const;
const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const STATUS = 3;
const RESIZE = 4;
const CLOSE = 255;
/** The sandbox's user: not root. */
export const SANDBOX_UID = 1000;

/** One exec: its sandbox, once the socket is open. */
export interface ExecData {
  argv: string[];
  tty: boolean;
  stdin: boolean;
  protocol: string;
  binds: Directory[];
  podUid: string;
  namespace: string;
  podName: string;
  process?: Subprocess;
  terminal?: Bun.Terminal;
  stopWatching?: () => void;
}

/** Whether a request is an exec of a pod: `/api/v1/namespaces/<ns>/pods/<name>/exec`. */
export function execTarget(url: URL): { namespace: string; name: string } | null {
  const match = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/exec$/.exec(url.pathname);
  return match ? { namespace: decodeURIComponent(match[1]!), name: decodeURIComponent(match[2]!) } : null;
}

export class SimulatedExec {
  private readonly running = new Set<ServerWebSocket<ExecData>>();

  constructor(
    private readonly state: ClusterState,
    private readonly pods: ResourceType,
  ) {}

  /** Checks the exec and upgrades the connection; a Response when it cannot run. */
  async upgrade(request: Request, server: Server<ExecData>, target: { namespace: string; name: string }): Promise<Response | undefined> {
    const url = new URL(request.url);
    const offered = (request.headers.get("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim());
    const protocol = PROTOCOLS.find((p) => offered.includes(p));
    if (protocol === undefined) throw badRequest(`exec needs a WebSocket subprotocol of ${PROTOCOLS.join(" or ")}`);
    const pod = this.state.get(this.pods, target.namespace, target.name);
    if ((pod.status as { phase?: string } | undefined)?.phase !== "Running" || pod.metadata.deletionTimestamp) {
      throw badRequest(`pod ${target.name} is not running`);
    }
    const argv = url.searchParams.getAll("command");
    if (argv.length === 0) throw badRequest("exec needs a command");
    const spec = (isRecord(pod.spec) ? pod.spec : {}) as { containers?: Container[]; volumes?: Volume[] };
    const containers = spec.containers ?? [];
    const wanted = url.searchParams.get("container");
    const container = wanted === null ? containers[0] : containers.find((c) => c.name === wanted);
    if (!container) throw badRequest(`container ${wanted} is not valid for pod ${target.name}`);
    const binds = await this.resolveMounts(container, spec.volumes ?? []);
    const data: ExecData = {
      argv: sandboxArgs(container, binds, argv),
      tty: isTrue(url.searchParams.get("tty")),
      stdin: isTrue(url.searchParams.get("stdin")),
      protocol,
      binds: binds.map((b) => b.directory),
      podUid: pod.metadata.uid ?? "",
      namespace: target.namespace,
      podName: target.name,
    };
    if (!server.upgrade(request, { data, headers: { "sec-websocket-protocol": protocol } })) {
      for (const directory of data.binds) await directory.close();
      throw badRequest("exec needs a WebSocket upgrade");
    }
    return undefined;
  }

  readonly websocket = {
    open: (socket: ServerWebSocket<ExecData>) => this.open(socket),
    message: (socket: ServerWebSocket<ExecData>, message: string | Buffer) => this.message(socket, message),
    close: (socket: ServerWebSocket<ExecData>) => this.stop(socket),
    idleTimeout: 0,
  };

  /** Ends every exec (the simulator stops). */
  stopAll() {
    for (const socket of [...this.running]) {
      this.stop(socket);
      socket.close();
    }
  }

  private open(socket: ServerWebSocket<ExecData>) {
    const { data } = socket;
    this.running.add(socket);
    // The pod going (deleted, or replaced by one of the same name) takes its processes along.
    data.stopWatching = this.state.subscribe((event) => {
      if (event.resource !== this.pods || event.object.metadata.uid !== data.podUid) return;
      if (event.type === "DELETED" || event.object.metadata.deletionTimestamp) {
        this.stop(socket);
        socket.close();
      }
    });
    const send = (channel: number, bytes: Uint8Array) => {
      const frame = new Uint8Array(bytes.length + 1);
      frame[0] = channel;
      frame.set(bytes, 1);
      socket.send(frame);
    };
    const fds = data.binds.map((d) => d.fd);
    try {
      if (data.tty) {
        data.process = Bun.spawn(data.argv, {
          stdio: ["ignore", "ignore", "ignore", ...fds],
          terminal: { cols: 80, rows: 24, data: (_t, bytes) => send(STDOUT, bytes) },
        });
        data.terminal = data.process.terminal;
      } else {
        const process = Bun.spawn(data.argv, { stdio: [data.stdin ? "pipe" : "ignore", "pipe", "pipe", ...fds] });
        data.process = process;
        void pump(process.stdout as ReadableStream<Uint8Array>, (bytes) => send(STDOUT, bytes));
        void pump(process.stderr as ReadableStream<Uint8Array>, (bytes) => send(STDERR, bytes));
      }
    } catch (error) {
      send(STATUS, new TextEncoder().encode(JSON.stringify(failure(`cannot start the sandbox: ${String(error)}`))));
      this.stop(socket);
      socket.close();
      return;
    }
    const process = data.process;
    void process.exited.then(async (code) => {
      // Let the last output through before the status.
      await Bun.sleep(20);
      if (!this.running.has(socket)) return;
      const status = code === 0 ? { kind: "Status", apiVersion: "v1", metadata: {}, status: "Success" } : exitStatus(code);
      send(STATUS, new TextEncoder().encode(JSON.stringify(status)));
      this.stop(socket);
      socket.close();
    });
  }

  private message(socket: ServerWebSocket<ExecData>, message: string | Buffer) {
    const { data } = socket;
    const bytes = typeof message === "string" ? new TextEncoder().encode(message) : new Uint8Array(message);
    if (bytes.length === 0) return;
    const channel = bytes[0];
    const payload = bytes.subarray(1);
    if (channel === STDIN) {
      if (data.terminal) data.terminal.write(payload);
      else if (data.process?.stdin && typeof data.process.stdin !== "number") void data.process.stdin.write(payload);
    } else if (channel === RESIZE && data.terminal) {
      const size = parseSize(payload);
      if (size) data.terminal.resize(size.cols, size.rows);
    } else if (channel === CLOSE && payload[0] === STDIN && data.process?.stdin && typeof data.process.stdin !== "number") {
      void data.process.stdin.end();
    }
  }

  private stop(socket: ServerWebSocket<ExecData>) {
    const { data } = socket;
    if (!this.running.delete(socket)) return;
    data.stopWatching?.();
    // bwrap runs the command as its pid namespace's init: killing bwrap ends them all.
    data.process?.kill("SIGKILL");
    data.terminal?.close();
    for (const directory of data.binds) void directory.close();
  }

  /** Each mount of a hostPath volume: its subPath walked without following links, held open. */
  private async resolveMounts(container: Container, volumes: Volume[]): Promise<{ directory: Directory; mountPath: string; readOnly: boolean }[]> {
    const binds: { directory: Directory; mountPath: string; readOnly: boolean }[] = [];
    try {
      for (const mount of container.volumeMounts ?? []) {
        const volume = volumes.find((v) => v.name === mount.name);
        const hostPath = volume?.hostPath?.path;
        if (hostPath === undefined) continue;
        const components = (mount.subPath ?? "").split("/").filter((c) => c !== "");
        if (components.some((c) => c === "." || c === "..")) throw badRequest(`subPath ${mount.subPath} must not contain '.' or '..'`);
        const root = await Directory.open(hostPath);
        try {
          binds.push({ directory: await root.walk(components), mountPath: mount.mountPath, readOnly: mount.readOnly === true });
        } finally {
          await root.close();
        }
      }
    } catch (error) {
      for (const bind of binds) await bind.directory.close();
      if (error instanceof KubeStatusError) throw error;
      throw badRequest(`cannot mount the pod's volumes: ${error instanceof Error ? error.message : String(error)}`);
    }
    return binds;
  }
}

interface Container {
  name: string;
  workingDir?: string;
  env?: { name: string; value?: string }[];
  volumeMounts?: { name: string; mountPath: string; subPath?: string; readOnly?: boolean }[];
}

interface Volume {
  name: string;
  hostPath?: { path: string };
}

/** bwrap's command line: the system read-only, the mounts (fds 3, 4, ... in order), no network, uid 1000. */
function sandboxArgs(container: Container, binds: { mountPath: string; readOnly: boolean }[], argv: string[]): string[] {
  const args = ["bwrap", "--unshare-all", "--die-with-parent", "--uid", String(SANDBOX_UID), "--gid", String(SANDBOX_UID)];
  args.push("--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc");
  for (const link of ["bin", "sbin", "lib", "lib64"]) args.push("--symlink", `usr/${link}`, `/${link}`);
  args.push("--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run");
  for (const [index, bind] of binds.entries()) args.push(bind.readOnly ? "--ro-bind-fd" : "--bind-fd", String(3 + index), bind.mountPath);
  // The sandbox's own root (a tmpfs holding the mount points) is read-only too: only the mounts and /tmp take writes.
  args.push("--remount-ro", "/");
  args.push("--clearenv", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--setenv", "HOME", "/tmp", "--setenv", "TERM", "xterm-256color");
  for (const variable of container.env ?? []) if (variable.value !== undefined) args.push("--setenv", variable.name, variable.value);
  args.push("--chdir", container.workingDir ?? "/", "--", ...argv);
  return args;
}

async function pump(stream: ReadableStream<Uint8Array>, onChunk: (bytes: Uint8Array) => void) {
  const reader = stream.getReader();
  try {
    for (let read = await reader.read(); !read.done; read = await reader.read()) onChunk(read.value);
  } catch {
    // The process was killed.
  }
}

/** `{"Width": 80, "Height": 24}`, as Go decodes it: field names in any case. */
function parseSize(payload: Uint8Array): { cols: number; rows: number } | null {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
    const field = (name: string) => Object.entries(parsed).find(([key]) => key.toLowerCase() === name)?.[1];
    const cols = Number(field("width"));
    const rows = Number(field("height"));
    return Number.isInteger(cols) && Number.isInteger(rows) && cols > 0 && rows > 0 && cols < 10_000 && rows < 10_000 ? { cols, rows } : null;
  } catch {
    return null;
  }
}

function exitStatus(code: number | null) {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message: `command terminated with non-zero exit code: ${code}`,
    reason: "NonZeroExitCode",
    details: { causes: [{ reason: "ExitCode", message: String(code ?? 137) }] },
  };
}

function failure(message: string) {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason: "InternalError" };
}

function isTrue(value: string | null): boolean {
  return value === "true" || value === "1";
}

