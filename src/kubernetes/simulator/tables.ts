// Server-side printing: the `meta.k8s.io` Table that `kubectl get` asks for instead of the
// objects, and Kubernetes' human-readable ages ("5s", "3m20s", "2d"). What the columns of each
// resource are is decided in ./resources.ts. Imports ./objects.ts only.

import type { KubeObject } from "./objects.ts";

export interface ColumnDefinition {
  name: string;
  type: "string" | "integer" | "number" | "boolean" | "date";
  format: string;
  description: string;
  /** 0 for the default view, 1 for columns that only `-o wide` shows. */
  priority: number;
}

export interface TablePrinter {
  columns: readonly ColumnDefinition[];
  cells(object: KubeObject, now: Date): unknown[];
}

/** Which part of each object a row carries, as the `includeObject` query parameter says. */
export type IncludeObject = "None" | "Metadata" | "Object";

export function parseIncludeObject(value: string | null): IncludeObject {
  return value === "None" || value === "Object" ? value : "Metadata";
}

export function renderTable(
  printer: TablePrinter,
  objects: readonly KubeObject[],
  options: { apiVersion: string; resourceVersion?: string; includeObject: IncludeObject; now?: Date },
) {
  const now = options.now ?? new Date();
  return {
    kind: "Table",
    apiVersion: options.apiVersion,
    metadata: options.resourceVersion === undefined ? {} : { resourceVersion: options.resourceVersion },
    columnDefinitions: printer.columns,
    rows: objects.map((object) => ({
      cells: printer.cells(object, now),
      ...rowObject(object, options.includeObject, options.apiVersion),
    })),
  };
}

function rowObject(object: KubeObject, include: IncludeObject, apiVersion: string) {
  switch (include) {
    case "None":
      return {};
    case "Object":
      return { object };
    case "Metadata":
      // kubectl reads the namespace column of `get -A` and the name of `get -w` from here.
      return { object: { kind: "PartialObjectMetadata", apiVersion, metadata: object.metadata } };
  }
}

export const nameColumn: ColumnDefinition = {
  name: "Name",
  type: "string",
  format: "name",
  description: "Name must be unique within a namespace.",
  priority: 0,
};

export const ageColumn: ColumnDefinition = {
  name: "Age",
  type: "string",
  format: "",
  description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
  priority: 0,
};

export function age(object: KubeObject, now: Date): string {
  const created = object.metadata.creationTimestamp;
  if (!created) return "<unknown>";
  return humanDuration(now.getTime() - Date.parse(created));
}

/** Kubernetes' `duration.HumanDuration`: coarser the older a thing is. */
export function humanDuration(milliseconds: number): string {
  const seconds = Math.floor(milliseconds / 1000);
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) return hours % 24 === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  if (hours < 24 * 365 * 8) {
    const days = Math.floor(hours / 24) % 365;
    return days === 0 ? `${Math.floor(hours / 24 / 365)}y` : `${Math.floor(hours / 24 / 365)}y${days}d`;
  }
  return `${Math.floor(hours / 24 / 365)}y`;
}
