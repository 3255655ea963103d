// The layers of spec/architecture.md, checked by `npm run lint:layers` (part of `npm run check`).
//
// The folders of src/ stand in one order, from the entry point down to the domain types; a module
// may import its own folder and any folder below its own, never one above. So no two folders can
// ever import each other, through any number of steps: no cycles between folders by construction.
// The named rules below restate the architecture's "never"s, so that a violation says which one.

/** src/ from the top (the entry point) to the bottom (domain types every layer may use). */
const LAYERS = [
  "main.ts", // files directly in src/: the entry point (roles and operator commands)
  "runtimes", // Bun, deno serve and Node adapters at the edge, and signal handling
  "shell", // the terminal's shell sessions over WebSocket: exec into pods (above http, which never reaches Kubernetes)
  "cli", // operator commands
  "http", // routes, auth, HTTP semantics
  "worker", // takes tasks, schedules, resyncs
  "reconciler", // one level-triggered reconcile per record
  "service", // the operations and their rules; composes the rest
  "ucloud", // job registry
  "cache", // replica caches kept coherent by pub/sub
  "queue", // the durable task queue
  "storage", // drives and folder access on the file system
  "apps", // what each app wants: pure functions of a record and facts
  "kubernetes", // the client gateway, informers and the simulator
  "store", // Redis keys, transactions and scripts
  "metrics", // the metrics registry
  "settings", // config.toml
  "base", // errors, logs, request ids, secrets
  "domain", // owner, record, app interface: what every layer may name
];

const folder = (name) => (name.endsWith(".ts") ? `^src/${name.replace(".", "\\.")}$` : `^src/${name}/`);

const upward = LAYERS.flatMap((name, index) =>
  index === 0
    ? []
    : [
        {
          name: `layer-${name}`,
          comment: `src/${name} may import only itself and the layers below it (${LAYERS.slice(index + 1).join(", ")})`,
          severity: "error",
          from: { path: folder(name) },
          to: { path: LAYERS.slice(0, index).map(folder) },
        },
      ],
);

const never = (name, comment, from, to) => ({ name, comment, severity: "error", from: { path: `^src/${from}/` }, to: { path: to.map((t) => `^src/${t}/`) } });

module.exports = {
  forbidden: [
    never("apps-are-pure", "apps never touch Redis, the queue, Kubernetes, HTTP, the service, the worker or caches", "apps", [
      "store",
      "queue",
      "kubernetes",
      "http",
      "service",
      "worker",
      "reconciler",
      "cache",
    ]),
    never("http-knows-the-service-only", "http never reaches Redis, the queue, Kubernetes, the worker or caches", "http", [
      "store",
      "queue",
      "kubernetes",
      "worker",
      "reconciler",
      "cache",
    ]),
    never("store-knows-redis-only", "the store knows no app, service, HTTP, cache, worker or UCloud", "store", [
      "apps",
      "service",
      "http",
      "cache",
      "worker",
      "reconciler",
      "ucloud",
    ]),
    never("reconciler-returns-requeue", "the reconciler knows neither the worker nor HTTP nor the service", "reconciler", ["worker", "http", "service"]),
    never("kubernetes-is-a-gateway", "kubernetes imports nothing above it", "kubernetes", LAYERS.slice(0, LAYERS.indexOf("kubernetes")).filter((l) => !l.endsWith(".ts"))),
    never("queue-is-below-the-service", "the queue imports nothing above it", "queue", LAYERS.slice(0, LAYERS.indexOf("queue")).filter((l) => !l.endsWith(".ts"))),
    ...upward,
    {
      name: "no-circular",
      comment: "no module imports itself through others",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    {
      name: "no-orphans",
      comment: "every module in src/ is used (or is an entry point)",
      severity: "error",
      from: { orphan: true, path: "^src/", pathNot: ["^src/main\\.ts$", "^src/runtimes/(deno|node|serve)\\.ts$"] },
      to: {},
    },
    {
      name: "every-folder-is-a-layer",
      comment: "a new folder of src/ takes its place in LAYERS first",
      severity: "error",
      from: { path: "^src/", pathNot: LAYERS.map(folder) },
      to: {},
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^(node_modules|test|scripts)/" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { exportsFields: ["exports"], conditionNames: ["import", "require", "node", "default"] },
  },
};
