// The app's one router, remembering its answers. Hono's RegExpRouter cannot take the provider
// API's paths (`/ucloud/:providerId/iapps/:app/retrieve` beside `.../terminal/open`), so Hono's
// SmartRouter falls back to its TrieRouter, which walks the trie on every request: more than a
// cached retrieve spends on everything else. Routes do not change once the app serves, and
// clients ask for the same few paths again and again, so an answer found once is kept, keyed by
// method and path. Hono treats a match as read-only (RegExpRouter hands out shared ones too).
// Imports hono's routers.

import type { Result, Router } from "hono/router";
import { RegExpRouter } from "hono/router/reg-exp-router";
import { SmartRouter } from "hono/router/smart-router";
import { TrieRouter } from "hono/router/trie-router";

/**
 * How many (method, path) answers are kept; past it they are dropped all at once, so that a
 * client asking for endless made-up paths costs a trie walk each, and the paths in real use come
 * back at once. Paths longer than REMEMBERED_PATH_LENGTH are never kept.
 */
const REMEMBERED_PATHS = 1024;
const REMEMBERED_PATH_LENGTH = 256;

export class RememberingRouter<T> implements Router<T> {
  readonly name: string;
  private readonly answers = new Map<string, Map<string, Result<T>>>();
  private remembered = 0;

  /** `router`: the one that finds the answers; Hono's default (RegExpRouter, else TrieRouter) unless given. */
  constructor(private readonly router: Router<T> = new SmartRouter<T>({ routers: [new RegExpRouter(), new TrieRouter()] })) {
    this.name = `RememberingRouter(${router.name})`;
  }

  add(method: string, path: string, handler: T): void {
    this.forget();
    this.router.add(method, path, handler);
  }

  match(method: string, path: string): Result<T> {
    const known = this.answers.get(method)?.get(path);
    if (known !== undefined) return known;
    const found = this.router.match(method, path);
    if (path.length <= REMEMBERED_PATH_LENGTH) {
      if (this.remembered >= REMEMBERED_PATHS) this.forget();
      let byPath = this.answers.get(method);
      if (byPath === undefined) {
        byPath = new Map();
        this.answers.set(method, byPath);
      }
      byPath.set(path, found);
      this.remembered++;
    }
    return found;
  }

  private forget() {
    this.answers.clear();
    this.remembered = 0;
  }
}
