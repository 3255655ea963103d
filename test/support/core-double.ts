// A test double of UCloud/Core: the endpoints a provider calls, with UCloud's wire shapes
// (provider-integration/shared/pkg/orchestrators/jobs.go, resource.go; foundation/auth_providers.go),
// validating what it receives as strictly as Core's Go decoder would, and told to fail or hang.
//
//   POST /auth/providers/refresh        {items:[{refreshToken}]} → {responses:[{accessToken, csrfToken}]}
//   POST /api/jobs/control/register     {items:[ProviderRegisteredResource]} → {responses:[{id}]}
//   GET  /api/jobs/control/retrieve     ?id=&<JobFlags> → Job (404 when missing)
//   POST /api/jobs/control/update       {items:[{id, update: JobUpdate}]} → {}
//   GET  /api/jobs/control/browse       ?itemsPerPage=&next=&<JobFlags> → {items, next, itemsPerPage}
//
// It also holds the key Core signs its calls to the provider with: `serviceToken()` mints one.

import { generateKeyPairSync, randomBytes } from "node:crypto";
import { sign, verify } from "hono/jwt";
import * as v from "valibot";

const JOB_STATES = ["IN_QUEUE", "RUNNING", "SUCCESS", "FAILURE", "EXPIRED", "SUSPENDED"] as const;
type JobState = (typeof JOB_STATES)[number];
const FINAL: ReadonlySet<string> = new Set(["SUCCESS", "FAILURE", "EXPIRED"]);

const nullable = <T extends v.GenericSchema>(schema: T) => v.optional(v.nullable(schema));

const ProductReference = v.strictObject({ id: v.string(), category: v.string(), provider: v.string() });
const AppParameterValue = v.pipe(
  v.looseObject({
    type: v.picklist(["file", "boolean", "text", "integer", "floating_point", "peer", "license_server", "block_storage", "network", "ingress", "workflow", "modules"]),
    path: v.optional(v.string()),
    readOnly: v.optional(v.boolean()),
  }),
);
const JobSpecification = v.strictObject({
  product: ProductReference,
  application: v.strictObject({ name: v.string(), version: v.string() }),
  name: v.optional(v.string()),
  replicas: v.pipe(v.number(), v.integer(), v.minValue(1)),
  allowDuplicateJob: v.boolean(),
  parameters: v.record(v.string(), AppParameterValue),
  resources: v.array(AppParameterValue),
  timeAllocation: nullable(v.strictObject({ hours: v.number(), minutes: v.number(), seconds: v.number() })),
  openedFile: v.optional(v.string()),
  restartOnExit: v.optional(v.boolean()),
  sshEnabled: v.optional(v.boolean()),
  labels: v.optional(v.record(v.string(), v.string())),
});
const RegisterRequest = v.strictObject({
  items: v.pipe(
    v.array(
      v.strictObject({
        spec: JobSpecification,
        providerGeneratedId: nullable(v.string()),
        createdBy: nullable(v.string()),
        project: nullable(v.string()),
        projectAllRead: v.boolean(),
        projectAllWrite: v.boolean(),
      }),
    ),
    v.minLength(1),
  ),
});
const JobUpdate = v.strictObject({
  state: nullable(v.picklist(JOB_STATES)),
  outputFolder: nullable(v.string()),
  status: nullable(v.string()),
  expectedState: nullable(v.picklist(JOB_STATES)),
  expectedDifferentState: nullable(v.boolean()),
  newTimeAllocation: nullable(v.number()),
  allowRestart: nullable(v.boolean()),
  newMounts: nullable(v.array(v.string())),
  timestamp: v.number(),
});
const UpdateRequest = v.strictObject({ items: v.array(v.strictObject({ id: v.string(), update: JobUpdate })) });
const RefreshRequest = v.strictObject({ items: v.pipe(v.array(v.strictObject({ refreshToken: v.string() })), v.length(1)) });

/** Query keys of JobFlags (Go field names, first letter lower-cased) and of the browse request. */
const BOOL_FLAGS = ["includeOthers", "includeUpdates", "includeSupport", "includeProduct", "includeParameters", "includeApplication"];
const STRING_FLAGS = [
  "filterCreatedBy",
  "filterCreatedAfter",
  "filterCreatedBefore",
  "filterProvider",
  "filterProductId",
  "filterProductCategory",
  "hideProductId",
  "hideProductCategory",
  "hideProvider",
  "filterProviderIds",
  "filterIds",
  "sortBy",
  "sortDirection",
  "filterApplication",
  "filterState",
];

export interface DoubleJob {
  id: string;
  createdAt: number;
  owner: { createdBy: string; project: string | null };
  permissions: { myself: string[]; others: unknown[] };
  providerGeneratedId?: string;
  updates: Record<string, unknown>[];
  specification: v.InferOutput<typeof JobSpecification>;
  status: { state: JobState; startedAt: number | null; expiresAt: null; allowRestart: boolean };
  output: { outputFolder: null };
}

export interface Call {
  method: string;
  path: string;
  query: Record<string, string>;
  body: unknown;
  status: number;
}

/** `after`: calls to let through first. */
type Fault =
  | { kind: "status"; status: number; times: number; after: number }
  | { kind: "hang" }
  | { kind: "act-then-hang"; times: number }
  | { kind: "slow"; ms: number };

export interface CoreDoubleOptions {
  providerId?: string;
  refreshToken?: string;
  /** Lifetime of the access tokens it issues. Default 600 s, as Core. */
  accessTokenSeconds?: number;
  /** What retrieve answers for a job it does not hold: 404 (default), or 403 as Core's newest code. */
  missingJobStatus?: 403 | 404;
}

export class CoreDouble {
  readonly providerId: string;
  readonly refreshToken: string;
  accessTokenSeconds: number;
  missingJobStatus: 403 | 404;
  readonly jobs = new Map<string, DoubleJob>();
  readonly calls: Call[] = [];
  /** Core's key pair for its calls to the provider: the provider's `[auth] jwt_public_key` is `publicKey`. */
  readonly publicKey: string;
  private readonly privateKey: string;
  private readonly tokenSecret = randomBytes(32).toString("hex");
  private readonly faults = new Map<string, Fault>();
  private readonly hanging = new Set<() => void>();
  private server: ReturnType<typeof Bun.serve> | null = null;
  private nextId = 1000;
  port = 0;

  private constructor(options: CoreDoubleOptions) {
    this.providerId = options.providerId ?? "k8s";
    this.refreshToken = options.refreshToken ?? `refresh-${randomBytes(8).toString("hex")}`;
    this.accessTokenSeconds = options.accessTokenSeconds ?? 600;
    this.missingJobStatus = options.missingJobStatus ?? 404;
    const pair = generateKeyPairSync("rsa", {
      modulusLength: 2048,
      publicKeyEncoding: { type: "spki", format: "pem" },
      privateKeyEncoding: { type: "pkcs8", format: "pem" },
    });
    this.publicKey = pair.publicKey;
    this.privateKey = pair.privateKey;
  }

  static async start(options: CoreDoubleOptions = {}): Promise<CoreDouble> {
    const core = new CoreDouble(options);
    core.up();
    return core;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Listens again (on the same port after `down`). */
  up() {
    this.server = Bun.serve({ hostname: "127.0.0.1", port: this.port, fetch: (request) => this.handle(request) });
    this.port = this.server.port!;
  }

  /** Stops listening: calls are refused until `up`. */
  async down() {
    this.releaseHanging();
    await this.server?.stop(true);
    this.server = null;
  }

  async close() {
    await this.down();
  }

  /** After `after` more calls, the next `times` calls to `path` answer `status` without acting. */
  fail(path: string, status: number, times = 1, after = 0) {
    this.faults.set(path, { kind: "status", status, times, after });
  }

  /** Calls to `path` are never answered (until `heal`). */
  hang(path: string) {
    this.faults.set(path, { kind: "hang" });
  }

  /** The next `times` calls to `path` are carried out, and then never answered. */
  actThenHang(path: string, times = 1) {
    this.faults.set(path, { kind: "act-then-hang", times });
  }

  /** Calls to `path` wait `ms` before Core acts on them and answers. */
  slow(path: string, ms: number) {
    this.faults.set(path, { kind: "slow", ms });
  }

  heal() {
    this.faults.clear();
    this.releaseHanging();
  }

  callsTo(path: string): Call[] {
    return this.calls.filter((c) => c.path === path);
  }

  /** A token as Core signs its calls to the provider. */
  serviceToken(claims: Record<string, unknown> = {}): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return sign(
      { principalType: "service", role: "SERVICE", sub: "_UCloud", iat: now, exp: now + 600, aud: ["all:write"], iss: "cloud.sdu.dk", ...claims },
      this.privateKey,
      "RS256",
    );
  }

  /** Sets a job's state as Core would after another party's update (a user cancelling it, say). */
  setState(id: string, state: JobState) {
    const job = this.jobs.get(id);
    if (!job) throw new Error(`no job ${id}`);
    job.status.state = state;
    job.updates.push({ state, status: null, timestamp: Date.now() });
  }

  liveJobsOf(createdBy: string, productId: string): DoubleJob[] {
    return [...this.jobs.values()].filter((j) => j.owner.createdBy === createdBy && j.specification.product.id === productId && !FINAL.has(j.status.state));
  }

  private releaseHanging() {
    for (const release of this.hanging) release();
    this.hanging.clear();
  }

  private async handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname;
    const query = Object.fromEntries(url.searchParams);
    let body: unknown;
    if (request.method === "POST") {
      try {
        body = await request.json();
      } catch {
        return this.answer({ method: request.method, path, query, body: "<not JSON>" }, 400, error(400, "Invalid request supplied"));
      }
    }
    const call = { method: request.method, path, query, body };
    const fault = this.faults.get(path);
    if (fault?.kind === "status" && fault.after > 0) fault.after--;
    else if (fault?.kind === "status") {
      if (--fault.times <= 0) this.faults.delete(path);
      return this.answer(call, fault.status, error(fault.status, "Injected failure"));
    }
    if (fault?.kind === "hang") return this.hangForever(call);
    if (fault?.kind === "slow") await new Promise((resolve) => setTimeout(resolve, fault.ms));

    const response = await this.route(request, path, query, body);
    if (fault?.kind === "act-then-hang") {
      if (--fault.times <= 0) this.faults.delete(path);
      return this.hangForever({ ...call });
    }
    return this.answer(call, response.status, response.body);
  }

  private hangForever(call: Omit<Call, "status">): Promise<Response> {
    this.calls.push({ ...call, status: 0 });
    return new Promise((resolve) => this.hanging.add(() => resolve(new Response(null, { status: 504 }))));
  }

  private answer(call: Omit<Call, "status">, status: number, body: unknown): Response {
    this.calls.push({ ...call, status });
    return Response.json(body, { status });
  }

  private async route(request: Request, path: string, query: Record<string, string>, body: unknown): Promise<{ status: number; body: unknown }> {
    if (path === "/auth/providers/refresh" && request.method === "POST") return this.refresh(body);
    if (!path.startsWith("/api/jobs/control/")) return { status: 404, body: error(404, "Not found") };
    const caller = await this.provider(request);
    if (caller === null) return { status: 401, body: error(401, "Unauthorized") };
    const operation = `${request.method} ${path.slice("/api/jobs/control/".length)}`;
    switch (operation) {
      case "POST register":
        return this.register(body);
      case "GET retrieve":
        return this.retrieve(query);
      case "POST update":
        return this.update(body);
      case "GET browse":
        return this.browse(query);
      default:
        return { status: 404, body: error(404, "Not found") };
    }
  }

  private async refresh(body: unknown) {
    const parsed = v.safeParse(RefreshRequest, body);
    if (!parsed.success) return { status: 400, body: error(400, `Invalid request supplied: ${issueOf(parsed.issues)}`) };
    if (parsed.output.items[0]!.refreshToken !== this.refreshToken) return { status: 401, body: error(401, "Unauthorized") };
    const now = Math.floor(Date.now() / 1000);
    const accessToken = await sign(
      { principalType: "provider", role: "PROVIDER", sub: `#P_${this.providerId}`, iat: now, exp: now + this.accessTokenSeconds, aud: ["all:write"], iss: "cloud.sdu.dk", jti: randomBytes(8).toString("hex") },
      this.tokenSecret,
      "HS256",
    );
    return { status: 200, body: { responses: [{ accessToken, csrfToken: "" }] } };
  }

  /** The provider id of a valid access token, or null. */
  private async provider(request: Request): Promise<string | null> {
    const match = /^Bearer (\S+)$/.exec(request.headers.get("authorization") ?? "");
    if (!match) return null;
    try {
      const claims = (await verify(match[1]!, this.tokenSecret, "HS256")) as { sub?: string; role?: string };
      return claims.role === "PROVIDER" && claims.sub === `#P_${this.providerId}` ? this.providerId : null;
    } catch {
      return null;
    }
  }

  private register(body: unknown) {
    const parsed = v.safeParse(RegisterRequest, body);
    if (!parsed.success) return { status: 400, body: error(400, `Invalid request supplied: ${issueOf(parsed.issues)}`) };
    if (parsed.output.items.some((item) => item.spec.product.provider !== this.providerId)) return { status: 403, body: error(403, "Forbidden") };
    const responses = parsed.output.items.map((item) => {
      const id = String(this.nextId++);
      this.jobs.set(id, {
        id,
        createdAt: Date.now(),
        owner: { createdBy: item.createdBy ?? "_ucloud", project: item.project ?? null },
        permissions: { myself: ["READ", "PROVIDER"], others: [] },
        ...(item.providerGeneratedId ? { providerGeneratedId: item.providerGeneratedId } : {}),
        updates: [],
        specification: item.spec,
        status: { state: "IN_QUEUE", startedAt: null, expiresAt: null, allowRestart: false },
        output: { outputFolder: null },
      });
      return { id };
    });
    return { status: 200, body: { responses } };
  }

  private checkFlags(query: Record<string, string>, extra: string[]): string | null {
    for (const [key, value] of Object.entries(query)) {
      if (BOOL_FLAGS.includes(key)) {
        if (!["true", "false"].includes(value)) return `${key}: expected true or false`;
      } else if (!STRING_FLAGS.includes(key) && !extra.includes(key)) return `${key}: unknown parameter`;
    }
    if (query.filterState !== undefined && !(JOB_STATES as readonly string[]).includes(query.filterState)) return "filterState: unknown state";
    return null;
  }

  private retrieve(query: Record<string, string>) {
    const problem = this.checkFlags(query, ["id"]);
    if (problem) return { status: 400, body: error(400, `Invalid request supplied: ${problem}`) };
    const job = this.jobs.get(query.id ?? "");
    if (!job) return { status: this.missingJobStatus, body: error(this.missingJobStatus, this.missingJobStatus === 404 ? "Not found" : "Write permission is required") };
    return { status: 200, body: job };
  }

  private update(body: unknown) {
    const parsed = v.safeParse(UpdateRequest, body);
    if (!parsed.success) return { status: 400, body: error(400, `Invalid request supplied: ${issueOf(parsed.issues)}`) };
    for (const { id, update } of parsed.output.items) {
      const job = this.jobs.get(id);
      // As Core: the batch stops at the first unknown job; earlier ones are already applied.
      if (!job) return { status: 404, body: error(404, `Unknown job or permission denied (${id})`) };
      const apply =
        update.expectedState != null
          ? job.status.state === update.expectedState
          : update.expectedDifferentState === true && update.state != null
            ? job.status.state !== update.state
            : true;
      if (!apply) continue;
      if (update.state != null && FINAL.has(job.status.state) && !FINAL.has(update.state)) continue;
      if (update.state != null) {
        job.status.state = update.state;
        if (update.state === "RUNNING") job.status.startedAt = Date.now();
      }
      job.updates.push({ ...update, timestamp: Date.now() });
    }
    return { status: 200, body: {} };
  }

  private browse(query: Record<string, string>) {
    const problem = this.checkFlags(query, ["itemsPerPage", "next"]);
    if (problem) return { status: 400, body: error(400, `Invalid request supplied: ${problem}`) };
    const requested = Number(query.itemsPerPage);
    const itemsPerPage = [10, 25, 50, 100, 250, 1000].includes(requested) ? requested : 50;
    const below = query.next === undefined ? Infinity : Number(query.next);
    const matching = [...this.jobs.values()]
      .filter((job) => Number(job.id) < below)
      .filter((job) => query.filterCreatedBy === undefined || job.owner.createdBy === query.filterCreatedBy)
      .filter((job) => query.filterProvider === undefined || job.specification.product.provider === query.filterProvider)
      .filter((job) => query.filterProductId === undefined || job.specification.product.id === query.filterProductId)
      .filter((job) => query.filterProductCategory === undefined || job.specification.product.category === query.filterProductCategory)
      .filter((job) => query.filterState === undefined || job.status.state === query.filterState)
      .sort((a, b) => Number(b.id) - Number(a.id));
    const items = matching.slice(0, itemsPerPage);
    const next = matching.length > itemsPerPage ? items.at(-1)!.id : null;
    return { status: 200, body: { items, next, itemsPerPage } };
  }
}

function error(statusCode: number, why: string) {
  return { statusCode, why, errorCode: null };
}

function issueOf(issues: readonly v.BaseIssue<unknown>[]): string {
  const issue = issues[0]!;
  return `${v.getDotPath(issue) ?? "(body)"}: ${issue.message}`;
}
