// A real reconciling worker in its own process (as `bun src/main.ts worker` runs it), with one
// fault to inject for tests: TEST_CRASH_AFTER_POD_DELETE=1 makes the process SIGKILL itself
// right after it has deleted a pod, before anything can recreate it. SIGTERM or SIGINT stops it
// as a worker stops: no new tasks, those in flight finished (bounded).

import { resolveConfig } from "../../src/settings/config.ts";
import { createContext } from "../../src/service/context.ts";
import { startReconcilingWorker } from "../../src/worker/start.ts";
import { onStopSignal } from "../../src/runtimes/signals.ts";
import { log } from "../../src/base/log.ts";

const config = resolveConfig({ auth: { jwt_secret: "unused" } }, { source: "reconciler-process", environment: process.env });
const context = createContext(config, { cache: false });
const reconciling = startReconcilingWorker(context, process.env.TEST_SIMULATOR_URL);
if (process.env.TEST_CRASH_AFTER_POD_DELETE === "1") {
  const deletePod = reconciling.gateway.deletePod.bind(reconciling.gateway);
  reconciling.gateway.deletePod = async (name: string) => {
    const deleted = await deletePod(name);
    if (deleted) process.kill(process.pid, "SIGKILL");
    return deleted;
  };
}
// SIGTERM or SIGINT: stop taking tasks, finish those in flight (bounded), close, exit 0.
onStopSignal(async (signal) => {
  log("info", "worker stopping: finishing the tasks in flight", { signal });
  await reconciling.worker.stop(config.worker.shutdown_timeout);
  await context.close();
  process.exit(0);
});
