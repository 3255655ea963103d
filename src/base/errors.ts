// Errors are values with an HTTP status and UCloud's error code. Every layer throws these;
// the HTTP layer maps them to `{statusCode, why, errorCode}` in one place (src/http/errors.ts).
// Imports nothing.

/** Every error code the service answers with (the OpenAPI document lists them from here). */
export const ERROR_CODES = [
  "INVALID_REQUEST",
  "INVALID_CONFIGURATION",
  "UNAUTHORIZED",
  "FORBIDDEN",
  "UNKNOWN_APPLICATION",
  "NOT_FOUND",
  "ETAG_MISMATCH",
  "PRECONDITION_FAILED",
  "PAYLOAD_TOO_LARGE",
  "PRECONDITION_REQUIRED",
  "UNAVAILABLE",
  "INTERNAL_ERROR",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    readonly why: string,
    options?: { cause?: unknown; retryAfterSeconds?: number },
  ) {
    super(why, options);
    this.name = "AppError";
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }

  /** When to try again (the `Retry-After` header), for a 503 that says "busy, not broken". */
  readonly retryAfterSeconds: number | undefined;

  toBody() {
    return errorBody(this.status, this.code, this.why);
  }
}

/**
 * UCloud's error shape. Also for an answer that needs no error value: a route that does not
 * exist is answered without building an Error (and its stack) for every such request.
 */
export function errorBody(status: number, code: ErrorCode, why: string) {
  return { statusCode: status, why, errorCode: code };
}

export const invalidRequest = (why: string) => new AppError(400, "INVALID_REQUEST", why);
export const invalidConfiguration = (why: string) => new AppError(400, "INVALID_CONFIGURATION", why);
export const unauthorized = (why: string) => new AppError(401, "UNAUTHORIZED", why);
export const forbidden = (why: string) => new AppError(403, "FORBIDDEN", why);
export const unknownApplication = (app: string) =>
  new AppError(404, "UNKNOWN_APPLICATION", `There is no integrated application called '${app}' on this provider.`);
/** An internal app's configuration routes (it has none): the code of an unknown app, and what to do instead. */
export const noConfigurationRoutes = (app: string, providerId: string) =>
  new AppError(
    404,
    "UNKNOWN_APPLICATION",
    `The integrated application '${app}' has no configuration routes: it is configured by opening it, POST /ucloud/${providerId}/iapps/${app}/open (which UCloud/Core calls with the folder to open).`,
  );
export const notFound = (why: string) => new AppError(404, "NOT_FOUND", why);
export const etagMismatch = () =>
  new AppError(
    409,
    "ETAG_MISMATCH",
    "expectedETag: the configuration has changed since you last loaded it. Reload it and try again.",
  );
export const preconditionFailed = () =>
  new AppError(
    412,
    "PRECONDITION_FAILED",
    "If-Match: the configuration has changed since you last loaded it. Reload it and try again.",
  );
export const payloadTooLarge = (limit: number) =>
  new AppError(413, "PAYLOAD_TOO_LARGE", `The request body is larger than the limit of ${limit} bytes.`);
export const configurationTooLarge = (bytes: number, limit: number) =>
  new AppError(
    413,
    "PAYLOAD_TOO_LARGE",
    `config: the configuration is ${bytes} bytes of JSON; a configuration may be at most ${limit} bytes (${limit / 1024} KiB). Nothing was stored.`,
  );
export const preconditionRequired = () =>
  new AppError(
    428,
    "PRECONDITION_REQUIRED",
    "expectedETag: this provider requires the ETag of the configuration you are replacing (send expectedETag or an If-Match header).",
  );
export const unavailable = (why: string, cause?: unknown) => new AppError(503, "UNAVAILABLE", why, { cause });
