// Waiting for the pod a record should have: its job's rank-0 pod, Running, carrying the record's
// ETag (and whatever else `check` asks). Shared by the suites that watch the reconciler work.

import type { V1Pod } from "@kubernetes/client-node";
import type { Redis } from "ioredis";
import type { KubernetesGateway } from "../../src/kubernetes/gateway.ts";
import { ANNOTATIONS, podName } from "../../src/reconciler/objects.ts";
import { keys } from "../../src/store/keys.ts";
import { eventually } from "./eventually.ts";

/** The Running pod of `user`'s record of `app` with ETag `etag`, within `seconds`. */
export function runningPodOf(
  redis: Redis,
  cluster: KubernetesGateway,
  app: string,
  user: string,
  etag: string,
  check: (pod: V1Pod) => boolean = () => true,
  seconds = 20,
): Promise<V1Pod> {
  return eventually(
    async () => {
      const jobId = await redis.hget(keys.record(app, { createdBy: user, project: null }), "jobId");
      const pod = jobId ? await cluster.getPod(podName(jobId)) : null;
      return pod?.metadata?.annotations?.[ANNOTATIONS.etag] === etag && pod.status?.phase === "Running" && check(pod) && pod;
    },
    seconds,
    `a running ${app} pod for ${user}`,
  );
}
