// The integrated terminal: an idle shell container over the drives a user opened it in (spec §8).
// Internal: it has no configuration routes; the open/activity routes and its runtime come later.

import * as v from "valibot";
import { defineApp } from "./app.ts";
import { ucloudPath } from "./paths.ts";

export const MAX_TERMINAL_FOLDERS = 1000;

export const TerminalConfigSchema = v.object({
  folders: v.pipe(
    v.array(ucloudPath, "expected an array"),
    v.maxLength(MAX_TERMINAL_FOLDERS, `at most ${MAX_TERMINAL_FOLDERS} folders`),
  ),
});

export type TerminalConfig = v.InferOutput<typeof TerminalConfigSchema>;

export const terminal = defineApp<TerminalConfig>({
  name: "terminal",
  internal: true,
  configSchema: TerminalConfigSchema,
  defaultConfig: () => ({ folders: [] }),
  validate(config) {
    const seen = new Map<string, number>();
    for (const [index, folder] of config.folders.entries()) {
      const first = seen.get(folder);
      if (first !== undefined) return { path: `folders[${index}]`, reason: `duplicate folder (also folders[${first}])` };
      seen.set(folder, index);
    }
    return null;
  },
  version: () => undefined,
  // Spec §8: it runs only while its inactivity lease is alive. The lease (and the open and
  // activity routes that refresh it) arrive with the apps issue; without one it never runs.
  shouldRun: () => false,
  podMatches: () => true,
  mutatePod(pod, { settings }) {
    const container = pod.spec!.containers[0]!;
    container.image = `${settings.image}:${settings.image_version}`;
    container.command = ["sleep", "inf"];
    container.resources = { requests: { cpu: "500m", memory: "2000000000" }, limits: { cpu: "1000m", memory: "2000000000" } };
    pod.spec!.terminationGracePeriodSeconds = 0;
  },
  mutateService: () => {},
  mutateNetworkPolicy: () => {},
  mutateJobSpec: (_owner, spec) => ({
    ...spec,
    name: "Integrated terminal",
    application: { name: "unknown", version: "unknown" },
  }),
});
