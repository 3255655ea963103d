// A small model of the parts of OpenAPI 3.1 the API description uses: what src/http/openapi.ts
// builds and src/http/docs-page.ts renders. Types only; imports @valibot/to-json-schema's types.

import type { JsonSchema } from "@valibot/to-json-schema";

export type SchemaObject = JsonSchema & Record<string, unknown>;
export interface ParameterObject {
  name: string;
  in: "query" | "header";
  required?: boolean;
  description?: string;
  schema: SchemaObject;
}
export interface HeaderObject {
  description: string;
  schema: SchemaObject;
}
export interface ResponseObject {
  description: string;
  headers?: Record<string, HeaderObject | { $ref: string }>;
  content?: Record<string, { schema: SchemaObject }>;
}
export interface OperationObject {
  operationId: string;
  tags: string[];
  summary: string;
  description?: string;
  security: Record<string, string[]>[];
  parameters?: (ParameterObject | { $ref: string })[];
  requestBody?: { required: boolean; content: Record<string, { schema: SchemaObject }> };
  responses: Record<string, ResponseObject | { $ref: string }>;
}
export type Method = "get" | "post";
export interface OpenApiDocument {
  openapi: string;
  jsonSchemaDialect: string;
  info: { title: string; version: string; description: string };
  tags: { name: string; description: string }[];
  paths: Record<string, Partial<Record<Method, OperationObject>>>;
  components: {
    schemas: Record<string, SchemaObject>;
    responses: Record<string, ResponseObject>;
    parameters: Record<string, ParameterObject>;
    headers: Record<string, HeaderObject>;
    securitySchemes: Record<string, Record<string, string>>;
  };
}

