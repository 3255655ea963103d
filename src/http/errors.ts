// Errors to HTTP answers, in one place: every error body has UCloud's shape
// `{statusCode, why, errorCode}`.

import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import { AppError, notFound } from "../errors.ts";

export function errorResponse(c: Context, error: AppError): Response {
  return c.json(error.toBody(), error.status as 400);
}

export function toAppError(error: unknown, log?: (message: string, fields: Record<string, unknown>) => void): AppError {
  if (error instanceof AppError) return error;
  if (error instanceof HTTPException && error.status < 500) {
    return new AppError(error.status, error.status === 404 ? "NOT_FOUND" : "INVALID_REQUEST", error.message || "The request was not understood.");
  }
  log?.("unhandled error", { error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  return new AppError(500, "INTERNAL_ERROR", "Something went wrong on our side. It has been logged; try again later.");
}

export const routeNotFound = (method: string, path: string) =>
  notFound(`There is no route ${method} ${path}. The routes are listed in the README.`);
