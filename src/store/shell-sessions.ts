// The terminal's shell sessions in Redis (spec §8): what `openTerminalInFolder` creates and the
// WebSocket attaches, on any API replica. A session is a string named by a random 32-character
// identifier (about 190 bits: unguessable), bound to one owner and folder, with a TTL; each user's
// sessions are also in a sorted set scored by expiry, which bounds how many one user may hold.
// Imports node:crypto, src/store/keys.ts and the connection type of src/store/connections.ts.

import { randomInt } from "node:crypto";
import type { Owner } from "../domain/owner.ts";
import type { CommandConnection } from "./connections.ts";
import { keys } from "./keys.ts";

export interface ShellSession {
  id: string;
  owner: Owner;
  /** The UCloud folder the session was opened in. */
  folder: string;
  createdAt: string;
  /** Whether a WebSocket attached it before: a later attach is a reconnect. */
  attached: boolean;
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
export const SESSION_ID_LENGTH = 32;
const SESSION_ID = new RegExp(`^[A-Za-z0-9]{${SESSION_ID_LENGTH}}$`);

export class RedisShellSessions {
  constructor(private readonly commands: CommandConnection) {}

  /** A new session for `owner` in `folder`, or null when the owner already holds `max` live ones. */
  async create(owner: Owner, folder: string, ttlMs: number, max: number): Promise<ShellSession | null> {
    const redis = await this.commands();
    const id = Array.from({ length: SESSION_ID_LENGTH }, () => ALPHABET[randomInt(ALPHABET.length)]).join("");
    const mine = keys.shellSessionsOf(owner.createdBy);
    const now = Date.now();
    // Add first, then count: concurrent opens each see the others, so the cap is never passed.
    const counted = await redis.multi().zremrangebyscore(mine, "-inf", now).zadd(mine, now + ttlMs, id).zcard(mine).pexpire(mine, ttlMs).exec();
    const count = Number(counted?.[2]?.[1] ?? Number.POSITIVE_INFINITY);
    if (count > max) {
      await redis.zrem(mine, id);
      return null;
    }
    const session: ShellSession = { id, owner, folder, createdAt: new Date(now).toISOString(), attached: false };
    await redis.set(keys.shellSession(id), JSON.stringify(session), "PX", ttlMs);
    return session;
  }

  /** The session, or null when it is unknown, expired, or not even shaped like an identifier. */
  async get(id: unknown): Promise<ShellSession | null> {
    if (typeof id !== "string" || !SESSION_ID.test(id)) return null;
    const redis = await this.commands();
    const text = await redis.get(keys.shellSession(id));
    return text === null ? null : (JSON.parse(text) as ShellSession);
  }

  /** Marks the session attached and gives it `ttlMs` more. */
  async attach(session: ShellSession, ttlMs: number): Promise<void> {
    const redis = await this.commands();
    await redis.set(keys.shellSession(session.id), JSON.stringify({ ...session, attached: true }), "PX", ttlMs);
    await redis.zadd(keys.shellSessionsOf(session.owner.createdBy), Date.now() + ttlMs, session.id);
  }

  /** Forgets the session. */
  async end(session: ShellSession): Promise<void> {
    const redis = await this.commands();
    await redis.del(keys.shellSession(session.id));
    await redis.zrem(keys.shellSessionsOf(session.owner.createdBy), session.id);
  }
}
