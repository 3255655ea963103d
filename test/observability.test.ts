// The operator's kit stays truthful (issue 17, "An operator's first day"): the Grafana dashboard
// (deploy/grafana/ucloud-iapps.json), the Prometheus alert rules (deploy/prometheus/alerts.yaml)
// and the runbooks (docs/operations/runbooks.md) name only metrics the service exports, as its
// real /metrics shows them; the rules pass `promtool check rules` and their unit tests
// (`promtool test rules`); every alert has its runbook section; and `kubectl kustomize
// deploy/kubernetes` ships both as ConfigMaps. promtool and kubectl are skipped, saying so, where
// they are not installed.

import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse, parseAllDocuments, stringify } from "yaml";
import { type Exposition, parsePrometheus } from "./support/prometheus.ts";
import { TestRedis } from "./support/redis-server.ts";
import { cacheLive, type Instance, publicCall, startInstance } from "./support/service.ts";

setDefaultTimeout(60_000);

const ROOT = join(import.meta.dir, "..");
const DASHBOARD_FILE = "deploy/grafana/ucloud-iapps.json";
const RULES_FILE = "deploy/prometheus/alerts.yaml";
const RULE_TESTS_FILE = "deploy/prometheus/alerts.test.yaml";
const RUNBOOKS_FILE = "docs/operations/runbooks.md";
const read = (file: string) => readFileSync(join(ROOT, file), "utf8");
/** How the dashboard's panels name their data source: the `datasource` variable. */
const DATASOURCE_UID = ["$", "{datasource}"].join("");


interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: { refId: string; expr: string; datasource?: { type: string; uid: string } }[];
}
interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const dashboardText = read(DASHBOARD_FILE);
const dashboard = JSON.parse(dashboardText) as { panels: Panel[]; templating: { list: { name: string; type: string; query: unknown }[] }; uid: string; title: string };
const rulesText = read(RULES_FILE);
const ruleFile = parse(rulesText) as { groups: { name: string; rules: Rule[] }[] };
const alerts = ruleFile.groups.flatMap((group) => group.rules).filter((rule) => rule.alert !== undefined);
const runbooks = read(RUNBOOKS_FILE);

/** Every `iapps_…` name in a text (PromQL, help texts, prose). */
function metricNames(text: string): Set<string> {
  return new Set(text.match(/iapps_[a-z_]+/g) ?? []);
}

/** The family a name belongs to: a histogram's `_bucket`, `_count` and `_sum` are its own. */
function familyOf(name: string, exposition: Exposition): string {
  for (const suffix of ["_bucket", "_count", "_sum"]) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    if (exposition.families.get(base)?.type === "histogram") return base;
  }
  return name;
}

/** The heading anchors of a Markdown file, as GitHub and GitLab make them. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  for (const line of markdown.split("\n")) {
    const heading = /^#{1,6} (.+)$/.exec(line);
    if (heading) out.add(heading[1]!.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, "").replace(/ /g, "-"));
  }
  return out;
}

function tool(name: string): string | null {
  const found = Bun.which(name);
  if (!found) console.warn(`test/observability.test.ts: '${name}' is not on PATH; its checks are skipped (CI installs it).`);
  return found;
}

function run(command: string, args: string[]) {
  const result = spawnSync(command, args, { cwd: ROOT, encoding: "utf8" });
  return { status: result.status, output: `${result.stdout ?? ""}${result.stderr ?? ""}`, stdout: result.stdout ?? "" };
}

// ------------------------------------------------------------------ the service's own /metrics

let redis: TestRedis;
let api: Instance;
let exposition: Exposition;

beforeAll(async () => {
  redis = await TestRedis.start();
  api = startInstance(redis.url);
  await cacheLive(api);
  // A little traffic, so the labelled families have series too (their TYPE lines are there anyway).
  for (let i = 0; i < 2; i++) expect((await publicCall(api, "alice", "GET", "syncthing/retrieve")).status).toBe(200);
  expect((await api.request("/no/such/route")).status).toBe(404);
  expect((await api.request("/readyz")).status).toBe(200);
  await api.context.queue.add("reconcile:syncthing:observability");
  const response = await api.request("/metrics");
  expect(response.status).toBe(200);
  exposition = parsePrometheus(await response.text());
});

afterAll(async () => {
  await api?.close();
  await redis?.close();
});

describe("every iapps_ metric the kit names is one the service exports", () => {
  test("the exposition has the families the kit is built on", () => {
    for (const family of ["iapps_http_requests_total", "iapps_http_request_duration_seconds", "iapps_queue_tasks", "iapps_cache_subscription_live"]) {
      expect(exposition.families.has(family)).toBe(true);
    }
    expect(exposition.families.get("iapps_http_request_duration_seconds")!.type).toBe("histogram");
    expect(exposition.get("iapps_queue_tasks", { state: "pending" })).toBeGreaterThanOrEqual(1);
  });

  test("the dashboard: exported families only", () => {
    const names = [...metricNames(dashboardText)];
    expect(names.length).toBeGreaterThan(15);
    const unknown = names.filter((name) => !exposition.families.has(familyOf(name, exposition)));
    expect(unknown).toEqual([]);
  });

  test("the alert rules and the runbooks: exported families only", () => {
    for (const [file, text] of [
      [RULES_FILE, rulesText],
      [RUNBOOKS_FILE, runbooks],
    ] as const) {
      const unknown = [...metricNames(text)].filter((name) => !exposition.families.has(familyOf(name, exposition)));
      expect({ file, unknown }).toEqual({ file, unknown: [] });
    }
  });
});

// ------------------------------------------------------------------ the dashboard's shape

describe("the Grafana dashboard", () => {
  const panels = dashboard.panels.filter((panel) => panel.type !== "row");

  test("imports anywhere: a Prometheus datasource variable, used by every panel and query", () => {
    const variable = dashboard.templating.list.find((v) => v.name === "datasource");
    expect(variable).toMatchObject({ type: "datasource", query: "prometheus" });
    for (const panel of panels) {
      expect({ panel: panel.title, datasource: panel.datasource }).toEqual({ panel: panel.title, datasource: { type: "prometheus", uid: DATASOURCE_UID } });
      for (const target of panel.targets ?? []) expect(target.datasource?.uid).toBe(DATASOURCE_UID);
    }
    expect(dashboard.uid).toBe("ucloud-iapps");
  });

  test("panels have unique ids, fit the 24-column grid, and each has a query", () => {
    const ids = dashboard.panels.map((panel) => panel.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of dashboard.panels) expect(panel.gridPos.x + panel.gridPos.w).toBeLessThanOrEqual(24);
    for (const panel of panels) expect({ panel: panel.title, queries: (panel.targets ?? []).length > 0 }).toEqual({ panel: panel.title, queries: true });
  });

  test("it covers what an operator watches", () => {
    const queries = panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr)).join("\n");
    for (const wanted of [
      "rate(iapps_http_requests_total",
      'status=~"5.."',
      "histogram_quantile(0.5, sum by (route, le) (rate(iapps_http_request_duration_seconds_bucket",
      "histogram_quantile(0.99, sum by (route, le) (rate(iapps_http_request_duration_seconds_bucket",
      "iapps_cache_hits_total",
      "iapps_cache_invalidations_total",
      "iapps_cache_entries",
      "iapps_cache_bytes",
      "iapps_cache_subscription_live",
      "max by (state) (iapps_queue_tasks",
      "iapps_task_retries_total",
      "iapps_task_dead_letters_total",
      "iapps_task_duration_seconds_bucket",
      "iapps_reconcile_total",
      "iapps_kubernetes_requests_total",
      "iapps_kubernetes_errors_total",
      "iapps_scrape_errors_total",
      "up{",
    ]) {
      expect({ wanted, found: queries.includes(wanted) }).toEqual({ wanted, found: true });
    }
  });
});

// ------------------------------------------------------------------ the rules and their runbooks

describe("the alert rules", () => {
  test("each alert has for:, a severity, a summary, a description and its runbook section", () => {
    expect(alerts.length).toBeGreaterThanOrEqual(10);
    const sections = anchors(runbooks);
    for (const rule of alerts) {
      const anchor = rule.alert!.toLowerCase();
      expect({
        alert: rule.alert,
        for: typeof rule.for,
        severity: ["critical", "warning", "info"].includes(rule.labels?.severity ?? ""),
        summary: typeof rule.annotations?.summary,
        description: typeof rule.annotations?.description,
        runbook: rule.annotations?.runbook_url,
        section: sections.has(anchor),
      }).toEqual({
        alert: rule.alert,
        for: "string",
        severity: true,
        summary: "string",
        description: "string",
        runbook: `docs/operations/runbooks.md#${anchor}`,
        section: true,
      });
    }
  });

  test("the unit tests exercise every alert", () => {
    const tests = parse(read(RULE_TESTS_FILE)) as { tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[] };
    const cases = tests.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const rule of alerts) {
      const mine = cases.filter((c) => c.alertname === rule.alert);
      // Fires when it should, and is silent when it should be.
      expect({ alert: rule.alert, fires: mine.some((c) => c.exp_alerts.length > 0), silent: mine.some((c) => c.exp_alerts.length === 0) }).toEqual({
        alert: rule.alert,
        fires: true,
        silent: true,
      });
    }
  });

  const promtool = tool("promtool");

  test.skipIf(!promtool)("promtool check rules passes", () => {
    const result = run(promtool!, ["check", "rules", RULES_FILE]);
    expect({ status: result.status, output: result.output }).toMatchObject({ status: 0 });
  });

  test.skipIf(!promtool)("promtool test rules passes (each alert fires when it should, and not when it should not)", () => {
    const result = run(promtool!, ["test", "rules", RULE_TESTS_FILE]);
    expect({ status: result.status, output: result.output }).toMatchObject({ status: 0 });
  });

  test.skipIf(!promtool)("the dashboard's queries are valid PromQL (promtool parses them as recording rules)", () => {
    const queries = dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr));
    const rules = queries.map((expr, n) => ({
      record: `dashboard:query_${n}`,
      expr: expr.replaceAll("$__rate_interval", "5m").replaceAll("$job", ".*iapps.*"),
    }));
    const dir = mkdtempSync(join(tmpdir(), "iapps-dashboard-"));
    try {
      const file = join(dir, "dashboard.rules.yaml");
      writeFileSync(file, stringify({ groups: [{ name: "dashboard", rules }] }));
      const result = run(promtool!, ["check", "rules", file]);
      expect({ status: result.status, output: result.output }).toMatchObject({ status: 0 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ------------------------------------------------------------------ shipped with the manifests

/** kubectl, when its kustomize can build deploy/kubernetes (`labels:` needs v4.1, `components:` v3.7). */
function kustomizingKubectl(): string | null {
  const kubectl = tool("kubectl");
  if (!kubectl) return null;
  const version = run(kubectl, ["version", "--client", "-o", "json"]);
  const kustomize = /"kustomizeVersion":\s*"v?(\d+)\.(\d+)/.exec(version.stdout);
  if (!kustomize || Number(kustomize[1]) < 4 || (Number(kustomize[1]) === 4 && Number(kustomize[2]) < 1)) {
    console.warn("test/observability.test.ts: this kubectl's kustomize is older than v4.1 (or unknown); the kustomize build is skipped.");
    return null;
  }
  return kubectl;
}

describe("the manifests ship the dashboard and the rules", () => {
  const kubectl = kustomizingKubectl();

  test.skipIf(!kubectl)("kubectl kustomize deploy/kubernetes makes both ConfigMaps, with the files as they are", () => {
    const result = run(kubectl!, ["kustomize", "deploy/kubernetes"]);
    expect({ status: result.status, output: result.status === 0 ? "" : result.output }).toEqual({ status: 0, output: "" });
    const objects = parseAllDocuments(result.stdout).map(
      (d) => d.toJS() as { kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; data?: Record<string, string> },
    );
    const configMap = (name: string) => {
      const found = objects.filter((o) => o.kind === "ConfigMap" && o.metadata.name === name);
      expect({ name, count: found.length }).toEqual({ name, count: 1 });
      return found[0]!;
    };

    const dashboardMap = configMap("ucloud-iapps-grafana-dashboard");
    expect(dashboardMap.metadata.namespace).toBe("ucloud-iapps");
    expect(dashboardMap.metadata.labels?.grafana_dashboard).toBe("1");
    expect(JSON.parse(dashboardMap.data!["ucloud-iapps.json"]!)).toEqual(dashboard);

    const alertsMap = configMap("ucloud-iapps-alerts");
    expect(alertsMap.metadata.namespace).toBe("ucloud-iapps");
    expect(alertsMap.data!["ucloud-iapps.rules.yaml"]).toBe(rulesText);

    // The service's own objects are still all there.
    for (const [kind, name] of [
      ["Deployment", "ucloud-iapps-api"],
      ["Deployment", "ucloud-iapps-worker"],
      ["ConfigMap", "ucloud-iapps-config"],
    ]) {
      expect({ kind, name, found: objects.some((o) => o.kind === kind && o.metadata.name === name) }).toEqual({ kind, name, found: true });
    }
  });
});
