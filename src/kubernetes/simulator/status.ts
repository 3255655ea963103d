// Failures of the simulated Kubernetes API as Kubernetes `Status` objects (kind Status, reason,
// details, code), so that clients see exactly what a real API server would send them. Imports
// nothing.

export type StatusReason =
  | "BadRequest"
  | "NotFound"
  | "MethodNotAllowed"
  | "NotAcceptable"
  | "AlreadyExists"
  | "Conflict"
  | "Gone"
  | "Expired"
  | "UnsupportedMediaType"
  | "Invalid"
  | "InternalError";

const CODES: Record<StatusReason, number> = {
  BadRequest: 400,
  NotFound: 404,
  MethodNotAllowed: 405,
  NotAcceptable: 406,
  AlreadyExists: 409,
  Conflict: 409,
  Gone: 410,
  Expired: 410,
  UnsupportedMediaType: 415,
  Invalid: 422,
  InternalError: 500,
};

/** What a failure is about: the resource (plural, as the API server reports it) and the name. */
export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
}

export class KubeStatusError extends Error {
  readonly code: number;

  constructor(
    readonly reason: StatusReason,
    message: string,
    readonly details?: StatusDetails,
  ) {
    super(message);
    this.name = "KubeStatusError";
    this.code = CODES[reason];
  }

  toStatus() {
    return {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: this.message,
      reason: this.reason,
      ...(this.details ? { details: this.details } : {}),
      code: this.code,
    };
  }
}

export const badRequest = (message: string) => new KubeStatusError("BadRequest", message);

export const routeNotFound = () => new KubeStatusError("NotFound", "the server could not find the requested resource");

export const methodNotAllowed = () =>
  new KubeStatusError("MethodNotAllowed", "the server does not allow this method on the requested resource");
