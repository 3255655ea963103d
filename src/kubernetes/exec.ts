// A command in a pod's container through the Kubernetes exec API (client-node's `Exec`: a
// WebSocket speaking the channel protocol), with a TTY and resizes: what the integrated
// terminal's shell sessions run bash through. The only code that execs; the gateway hands it out.
// Imports @kubernetes/client-node only.

import { PassThrough } from "node:stream";
import { Exec, type KubeConfig, type V1Status } from "@kubernetes/client-node";

/** A running exec. */
export interface ExecProcess {
  write(data: string): void;
  resize(cols: number, rows: number): void;
  /** Ends it (closes the exec's WebSocket; the command is killed by the kubelet). */
  close(): void;
  /** Resolves when the command ends or the connection goes, with its status if there was one. */
  exited: Promise<V1Status | null>;
}

export interface ExecRequest {
  namespace: string;
  pod: string;
  container: string;
  command: string[];
  cols: number;
  rows: number;
  onOutput(data: Buffer): void;
}

/** Starts `command` with a TTY of `cols` × `rows`. Rejects when the exec cannot start (no pod, not running). */
export async function execWithTty(kubeConfig: KubeConfig, request: ExecRequest): Promise<ExecProcess> {
  const stdin = new PassThrough();
  // client-node sends a resize whenever its stdout stream emits "resize" with new rows/columns.
  const stdout = Object.assign(new PassThrough(), { columns: request.cols, rows: request.rows });
  stdout.on("data", (chunk: Buffer) => request.onOutput(chunk));
  let settle!: (status: V1Status | null) => void;
  const exited = new Promise<V1Status | null>((resolve) => (settle = resolve));
  const socket = await new Exec(kubeConfig).exec(
    request.namespace,
    request.pod,
    request.container,
    request.command,
    stdout,
    null,
    stdin,
    true,
    (status) => settle(status),
  );
  socket.on("close", () => settle(null));
  socket.on("error", () => settle(null));
  return {
    write: (data) => void stdin.write(data),
    resize(cols, rows) {
      stdout.columns = cols;
      stdout.rows = rows;
      stdout.emit("resize");
    },
    close: () => socket.close(),
    exited,
  };
}
