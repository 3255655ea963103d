// A Redis connection that speaks RESP2 itself, for the transaction pool's hot path
// (transaction-pool.ts): a WATCH with its reads, then a MULTI to EXEC, each one socket write and
// one batch of replies. ioredis stays the service's client everywhere else (the shared command
// connection, the subscriber, a Redis Cluster's slot map); on this path it cost an update more CPU
// than the transaction itself (a Command object, a promise and an encoding per command, a
// Pipeline per batch with a copy of every defined script, a timer per command), and the
// transaction connections use none of what it adds: they never reconnect, never queue while
// disconnected, and run no command outside the batches their borrower builds (issue 14).
//
// What it does: connect (TCP, or TLS for rediss:// or a `tls` option), authenticate, select the
// URL's database, name itself and learn its client id, in one round trip; then `send` writes a
// batch of commands at once and answers their replies in order. Error replies are redis-errors'
// ReplyError (as ioredis' are: redis-errors.ts tells their codes); a connection that closes, or
// fails to open, rejects everything it still owes with RedisUnavailableError. It never reconnects.
// Imports node:net, node:tls, redis-errors (the reply error class), src/base/secrets.ts and
// ./redis-errors.ts only.

/// <reference path="./untyped-modules.d.ts" />
import { connect as connectTcp, isIP, type Socket } from "node:net";
import { connect as connectTls, type ConnectionOptions } from "node:tls";
import redisErrors from "redis-errors";
import { maskSecrets } from "../base/secrets.ts";
import { RedisTimeoutError, RedisUnavailableError } from "./redis-errors.ts";

const { ReplyError } = redisErrors;

/** One argument of a command: sent as a bulk string. */
export type Argument = string | number;
/** One command: its name, then its arguments. */
export type RespCommand = readonly Argument[];
/** A reply: a simple or bulk string, an integer, a null (bulk or array), an error reply, or an array of replies. */
export type Reply = string | number | null | Error | Reply[];

export interface RespOptions {
  /** `CLIENT SETNAME`: how `CLIENT LIST` shows the connection. */
  name: string;
  /**
   * Every batch `send` writes is answered within this long, or the connection is closed (and
   * everything it owes fails with RedisUnavailableError). Checked by one sweep for every
   * connection every SWEEP_MS, not by a timer per batch: a late answer fails up to that much later.
   */
  commandTimeoutMs?: number;
  /** Bounds the TCP (and TLS) handshake and the opening round trip together. */
  connectTimeoutMs: number;
  /** Override the URL's credentials (a cluster's nodes share the seeds'). */
  username?: string;
  password?: string;
  /** TLS options; TLS is also used for a rediss:// URL. */
  tls?: ConnectionOptions;
}

interface Owed {
  /** How many replies the batch still waits for. */
  left: number;
  /** When it was written (performance.now()). */
  sentAt: number;
  replies: Reply[];
  resolve: (replies: Reply[]) => void;
  reject: (error: Error) => void;
}

const CR = 13;

/** How often the connections with a command timeout are looked at (see RespOptions.commandTimeoutMs). */
export const SWEEP_MS = 20;
/** The open connections with a command timeout, and the one timer that looks at them all. */
const timed = new Set<RespConnection>();
let sweeper: ReturnType<typeof setInterval> | undefined;

function sweep() {
  const now = performance.now();
  for (const connection of timed) connection.checkTimeout(now);
  if (timed.size === 0) {
    clearInterval(sweeper);
    sweeper = undefined;
  }
}

export class RespConnection {
  /** The server's id of this connection (`CLIENT ID`), for `CLIENT KILL ID`. */
  id = 0;
  /**
   * Set on a subscriber's connection: the messages of its subscriptions (`message`, channel,
   * payload), which come unasked for, between the replies it owes.
   */
  onMessage: ((channel: string, payload: string) => void) | null = null;
  /** Called once, when the connection has closed (for whatever reason), after what it owed failed. */
  onClose: ((error: Error) => void) | null = null;
  private closedBy: Error | null = null;
  private readonly owed: Owed[] = [];
  /** Unparsed bytes: a reply that has not fully arrived yet. */
  private buffer: Buffer | null = null;
  private offset = 0;

  private constructor(private readonly commandTimeoutMs: number | undefined) {}

  /** The socket, once open (set by `open`). */
  private transport!: Transport;

  /** Opens a connection to `url` (redis:// or rediss://, with its user, password and database), ready for `send`. */
  static async open(url: string, options: RespOptions): Promise<RespConnection> {
    const parsed = new URL(url);
    const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
    const port = Number(parsed.port || 6379);
    const tls = parsed.protocol === "rediss:" || options.tls !== undefined ? (options.tls ?? {}) : undefined;
    // As ioredis reads a URL: the path's database, else `?db=`; the user info's password, else `?password=`.
    const query = parsed.searchParams;
    const username = options.username ?? decodeURIComponent(parsed.username);
    const password = options.password ?? (decodeURIComponent(parsed.password) || (query.get("password") ?? ""));
    const database = Number(parsed.pathname.slice(1) || query.get("db") || 0);

    const connection = new RespConnection(options.commandTimeoutMs);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new RedisUnavailableError("Redis did not accept a connection in time")), options.connectTimeoutMs);
    });
    const { opening, abort } = openTransport(host, port, tls, {
      data: (chunk) => connection.received(chunk),
      error: (e) => connection.fail(new RedisUnavailableError(`the Redis connection failed: ${maskSecrets(e.message)}`)),
      close: () => connection.fail(new RedisUnavailableError("the Redis connection closed")),
    });
    try {
      connection.transport = await Promise.race([opening, timeout]);
      const hello: RespCommand[] = [];
      const auth = password !== "";
      if (auth) hello.push(username === "" ? ["AUTH", password] : ["AUTH", username, password]);
      if (database !== 0) hello.push(["SELECT", database]);
      hello.push(["CLIENT", "SETNAME", options.name], ["CLIENT", "ID"]);
      const replies = await Promise.race([connection.send(hello), timeout]);
      // As ioredis does: a password for a server that has none is no error, and a name it
      // refuses only leaves the connection unnamed.
      const refused = replies.find(
        (reply, i) =>
          reply instanceof Error && !(auth && i === 0 && reply.message.includes("without any password configured")) && i !== replies.length - 2,
      );
      if (refused) throw new RedisUnavailableError(`Redis refused the connection: ${maskSecrets((refused as Error).message)}`);
      connection.id = Number(replies.at(-1));
      if (options.commandTimeoutMs !== undefined && connection.usable) {
        timed.add(connection);
        sweeper ??= setInterval(sweep, SWEEP_MS);
        (sweeper as { unref?: () => void }).unref?.();
      }
      return connection;
    } catch (e) {
      connection.close();
      // A socket still connecting is given up; one that opens after all is closed at once.
      abort();
      opening.then((transport) => transport.destroy()).catch(() => {});
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Whether `send` may still be answered: the connection is open. */
  get usable(): boolean {
    return this.closedBy === null;
  }

  /**
   * Writes `commands` at once; answers their replies in order (an error reply as a ReplyError in
   * its place). Rejects with RedisUnavailableError when the connection closes first.
   */
  send(commands: readonly RespCommand[]): Promise<Reply[]> {
    if (this.closedBy !== null) return Promise.reject(this.closedBy);
    if (commands.length === 0) return Promise.resolve([]);
    const bytes = encode(commands);
    return new Promise<Reply[]>((resolve, reject) => {
      this.owed.push({ left: commands.length, sentAt: performance.now(), replies: [], resolve, reject });
      this.transport.write(bytes);
    });
  }

  /** Closes the connection at once: whatever it still owes fails (with `reason`, when given). */
  close(reason?: Error): void {
    this.fail(reason ?? new RedisUnavailableError("the Redis connection was closed"));
  }

  /** Ends the connection politely (QUIT), or at once when Redis does not answer. */
  async quit(): Promise<void> {
    if (this.closedBy !== null) return;
    await this.send([["QUIT"]]).catch(() => {});
    this.close();
  }

  /** Closes the connection when its oldest unanswered batch is older than its command timeout (the sweep's). */
  checkTimeout(now: number) {
    const oldest = this.owed[0];
    if (oldest !== undefined && now - oldest.sentAt > this.commandTimeoutMs!) {
      this.fail(new RedisTimeoutError(`Redis did not answer within ${this.commandTimeoutMs} ms`));
    }
  }

  /** Fails everything owed and closes the socket; the first reason is the one kept. */
  private fail(error: Error) {
    const first = this.closedBy === null;
    if (first) this.closedBy = error;
    timed.delete(this);
    this.transport?.destroy();
    this.buffer = null;
    for (const owed of this.owed.splice(0)) owed.reject(this.closedBy!);
    if (first) this.onClose?.(error);
  }

  private received(chunk: Buffer) {
    if (this.closedBy !== null) return;
    if (this.buffer === null || this.offset >= this.buffer.length) this.buffer = chunk;
    else this.buffer = Buffer.concat([this.buffer.subarray(this.offset), chunk]);
    this.offset = 0;
    for (;;) {
      const start = this.offset;
      let reply: Reply | undefined;
      try {
        reply = this.parse();
      } catch (e) {
        this.fail(new RedisUnavailableError(`Redis sent a reply this client cannot read: ${(e as Error).message}`));
        return;
      }
      if (reply === undefined) {
        // Kept for the next chunk: a copy, as a socket may reuse the memory it handed over.
        this.buffer = Buffer.from(this.buffer!.subarray(start));
        this.offset = 0;
        return;
      }
      if (this.onMessage !== null && Array.isArray(reply) && reply.length === 3 && reply[0] === "message") {
        this.onMessage(reply[1] as string, reply[2] as string);
        if (this.buffer === null) return;
        continue;
      }
      const owed = this.owed[0];
      if (owed === undefined) {
        this.fail(new RedisUnavailableError("Redis sent a reply nobody asked for"));
        return;
      }
      owed.replies.push(reply);
      if (--owed.left === 0) {
        this.owed.shift();
        owed.resolve(owed.replies);
      }
      if (this.buffer === null) return;
    }
  }

  /**
   * One reply from `offset`, or undefined when it has not fully arrived (then `offset` means
   * nothing). Lines are scanned and numbers read here, byte by byte (they are short); only a
   * string is made by Buffer, and the two simple strings a transaction hears most (OK, QUEUED)
   * are not made at all.
   */
  private parse(): Reply | undefined {
    const buffer = this.buffer!;
    const lineStart = this.offset + 1;
    let end = lineStart;
    while (end < buffer.length && buffer[end] !== CR) end++;
    if (end + 1 >= buffer.length) return undefined;
    const type = buffer[this.offset]!;
    this.offset = end + 2;
    switch (type) {
      case 0x2b: // + simple string
        return simpleString(buffer, lineStart, end);
      case 0x2d: // - error
        return new ReplyError(buffer.toString("utf8", lineStart, end));
      case 0x3a: // : integer
        return integer(buffer, lineStart, end);
      case 0x24: {
        // $ bulk string
        const length = integer(buffer, lineStart, end);
        if (length < 0) return null;
        if (this.offset + length + 2 > buffer.length) return undefined;
        const value = buffer.toString("utf8", this.offset, this.offset + length);
        this.offset += length + 2;
        return value;
      }
      case 0x2a: {
        // * array
        const length = integer(buffer, lineStart, end);
        if (length < 0) return null;
        const items: Reply[] = new Array(length);
        for (let i = 0; i < length; i++) {
          const item = this.parse();
          if (item === undefined) return undefined;
          items[i] = item;
        }
        return items;
      }
      default:
        throw new Error(`unknown reply type ${JSON.stringify(String.fromCharCode(type))}`);
    }
  }
}

/** The integer in `buffer` from `start` to `end` (an optional minus, then digits). */
function integer(buffer: Buffer, start: number, end: number): number {
  const negative = buffer[start] === 0x2d;
  let n = 0;
  for (let i = negative ? start + 1 : start; i < end; i++) {
    const digit = buffer[i]! - 0x30;
    if (digit < 0 || digit > 9) throw new Error(`not an integer: ${JSON.stringify(buffer.toString("latin1", start, end))}`);
    n = n * 10 + digit;
  }
  return negative ? -n : n;
}

/** A simple string: OK and QUEUED without making a string. */
function simpleString(buffer: Buffer, start: number, end: number): string {
  const length = end - start;
  if (length === 2 && buffer[start] === 0x4f && buffer[start + 1] === 0x4b) return "OK";
  if (
    length === 6 &&
    buffer[start] === 0x51 &&
    buffer[start + 1] === 0x55 &&
    buffer[start + 2] === 0x45 &&
    buffer[start + 3] === 0x55 &&
    buffer[start + 4] === 0x45 &&
    buffer[start + 5] === 0x44
  ) {
    return "QUEUED";
  }
  return buffer.toString("latin1", start, end);
}

/** What a connection hears from its socket. */
interface TransportEvents {
  data(chunk: Buffer): void;
  error(error: Error): void;
  close(): void;
}

/** What a connection needs of its socket. */
interface Transport {
  /** `bytes` is the encoder's buffer: reused by the next `send`, so whatever is kept must be copied. */
  write(bytes: Buffer): void;
  destroy(): void;
}

/**
 * A socket to `host:port`, open: Bun's own (Bun.connect) for plain TCP on Bun, where a round
 * trip through it costs half the CPU of node:net's emulation; node:net (or node:tls) otherwise.
 */
function openTransport(
  host: string,
  port: number,
  tls: ConnectionOptions | undefined,
  events: TransportEvents,
): { opening: Promise<Transport>; abort: () => void } {
  const bun = (globalThis as { Bun?: BunSockets }).Bun;
  // Bun.connect cannot be cancelled: a socket that opens late is closed by the caller then.
  if (tls === undefined && bun !== undefined) return { opening: openBunTransport(bun, host, port, events), abort: () => {} };
  // A server name is for a host name only (Bun refuses an IP address there; Node warns).
  const socket: Socket =
    tls === undefined ? connectTcp({ host, port }) : connectTls({ host, port, ...(isIP(host) === 0 ? { servername: host } : {}), ...tls });
  const opening = new Promise<Transport>((resolve, reject) => {
    socket.setNoDelay(true);
    const opened = () => {
      socket.off("error", refused);
      socket.on("error", events.error);
      socket.on("close", events.close);
      socket.on("data", events.data);
      // node:net keeps a buffer it cannot send at once: it gets a copy of its own.
      resolve({ write: (bytes) => void socket.write(Buffer.from(bytes)), destroy: () => socket.destroy() });
    };
    const refused = (e: Error) => {
      socket.destroy();
      reject(new RedisUnavailableError(maskSecrets(e.message)));
    };
    socket.once(tls === undefined ? "connect" : "secureConnect", opened);
    socket.once("error", refused);
  });
  return { opening, abort: () => socket.destroy() };
}

/** Bun's TCP client, as far as used here. */
interface BunSocket {
  write(data: string | Uint8Array): number;
  end(): void;
  terminate?(): void;
  setNoDelay?(noDelay: boolean): void;
}
interface BunSockets {
  connect(options: {
    hostname: string;
    port: number;
    socket: {
      data(socket: BunSocket, data: Buffer): void;
      drain(socket: BunSocket): void;
      close(socket: BunSocket): void;
      error(socket: BunSocket, error: Error): void;
    };
  }): Promise<BunSocket>;
}

/** A Bun socket: what it could not take at once (backpressure) waits for its drain, in order. */
async function openBunTransport(bun: BunSockets, host: string, port: number, events: TransportEvents): Promise<Transport> {
  let pending: Buffer | null = null;
  let closed = false;
  const flush = (socket: BunSocket) => {
    if (pending === null) return;
    const written = socket.write(pending);
    pending = written >= pending.length ? null : pending.subarray(Math.max(written, 0));
  };
  let socket: BunSocket;
  try {
    socket = await bun.connect({
      hostname: host,
      port,
      socket: {
        data: (_socket, data) => events.data(data),
        drain: (s) => flush(s),
        close: () => {
          if (closed) return;
          closed = true;
          events.close();
        },
        error: (_socket, error) => events.error(error),
      },
    });
  } catch (e) {
    throw new RedisUnavailableError(maskSecrets((e as Error).message));
  }
  socket.setNoDelay?.(true);
  return {
    write(bytes) {
      if (pending !== null) {
        pending = Buffer.concat([pending, bytes]);
        return;
      }
      const written = socket.write(bytes);
      if (written < bytes.length) pending = Buffer.from(bytes.subarray(Math.max(written, 0)));
    },
    destroy() {
      if (closed) return;
      closed = true;
      pending = null;
      // At once, sending nothing more (end() would flush first).
      if (socket.terminate) socket.terminate();
      else socket.end();
    },
  };
}

// The encoder: every batch is written into one buffer, byte by byte for short arguments and with
// one Buffer write (UTF-8) for long ones, and handed to the socket as it is. Building a string
// instead (a rope of a few hundred pieces) and converting it cost the socket write more than the
// encoding: about a third of an update's RESP work under Bun (measured: 11 µs against 4).

/** The encoder's buffer, shared by every connection (a `send` encodes and writes in one go); grown when a batch needs more. */
let out = Buffer.allocUnsafe(16 * 1024);
/** Arguments longer than this are copied in one Buffer write; shorter ones byte by byte. */
const LONG = 48;

/** `commands` in RESP (each an array of bulk strings), in the encoder's buffer: valid until the next call. */
function encode(commands: readonly RespCommand[]): Buffer {
  let pos = 0;
  for (const command of commands) {
    pos = room(pos, 16);
    out[pos++] = 0x2a; // *
    pos = digits(command.length, pos);
    for (const argument of command) {
      const value = typeof argument === "string" ? argument : String(argument);
      const length = value.length;
      // At most 3 bytes per UTF-16 unit, and the header and CRLF around it.
      pos = room(pos, 3 * length + 32);
      out[pos++] = 0x24; // $
      if (length > LONG) {
        // Optimistic too: the header for as many bytes as units, the value in UTF-8 after it, and
        // when that made more bytes, the header they need (moving the value along if it is longer).
        const start = pos;
        pos = digits(length, pos);
        const written = out.write(value, pos, "utf8");
        if (written !== length) {
          const after = start + String(written).length + 2;
          if (after !== pos) out.copyWithin(after, pos, pos + written);
          pos = digits(written, start);
        }
        pos += written;
      } else {
        // Optimistic: the header of an ASCII value, then the value; redone in UTF-8 when it is not.
        const start = pos;
        pos = digits(length, pos);
        for (let i = 0; i < length; i++) {
          const code = value.charCodeAt(i);
          if (code > 0x7f) {
            pos = utf8(value, start);
            break;
          }
          out[pos++] = code;
        }
      }
      out[pos++] = 0x0d;
      out[pos++] = 0x0a;
    }
  }
  return out.subarray(0, pos);
}

/** Makes room for `more` bytes after `pos` (copying what is encoded so far into a bigger buffer). */
function room(pos: number, more: number): number {
  if (pos + more > out.length) {
    const bigger = Buffer.allocUnsafe(Math.max(out.length * 2, pos + more));
    out.copy(bigger, 0, 0, pos);
    out = bigger;
  }
  return pos;
}

/** A non-negative integer and CRLF at `pos`. */
function digits(n: number, pos: number): number {
  if (n < 10) out[pos++] = 0x30 + n;
  else {
    const text = String(n);
    for (let i = 0; i < text.length; i++) out[pos++] = text.charCodeAt(i);
  }
  out[pos++] = 0x0d;
  out[pos++] = 0x0a;
  return pos;
}

/** A value that is not ASCII: its UTF-8 length and CRLF, then its bytes, at `pos` (just after the `$`). */
function utf8(value: string, pos: number): number {
  pos = digits(Buffer.byteLength(value), pos);
  return pos + out.write(value, pos, "utf8");
}

/** A flat HGETALL reply as an object. */
export function hashOf(reply: Reply): Record<string, string> {
  const hash: Record<string, string> = {};
  if (!Array.isArray(reply)) return hash;
  for (let i = 0; i + 1 < reply.length; i += 2) hash[reply[i] as string] = reply[i + 1] as string;
  return hash;
}
