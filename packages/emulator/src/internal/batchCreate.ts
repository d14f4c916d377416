/**
 * Checks of the `POST /v1/batches` body beyond the required fields
 * (metadata limits, output_expires_after), with OpenAI-style 400s.
 */
import { invalidRequest, invalidValue } from "./errors.js"

type Obj = { readonly [key: string]: unknown }
const isObject = (value: unknown): value is Obj => typeof value === "object" && value !== null && !Array.isArray(value)

export const parseMetadata = (value: unknown): Readonly<Record<string, string>> | null => {
  if (value === undefined || value === null) return null
  if (!isObject(value)) throw invalidValue("metadata", "expected an object of string values.")
  const entries = Object.entries(value)
  if (entries.length > 16) throw invalidRequest("Invalid 'metadata': too many properties (max 16).", "metadata", "invalid_value")
  for (const [key, entry] of entries) {
    if (key.length > 64) throw invalidRequest(`Invalid 'metadata': key '${key.slice(0, 20)}...' is longer than 64 characters.`, "metadata", "invalid_value")
    if (typeof entry !== "string") throw invalidRequest(`Invalid 'metadata.${key}': expected a string.`, `metadata.${key}`, "invalid_type")
    if (entry.length > 512) throw invalidRequest(`Invalid 'metadata.${key}': longer than 512 characters.`, `metadata.${key}`, "invalid_value")
  }
  return Object.fromEntries(entries) as Record<string, string>
}

export const parseOutputExpiresAfter = (value: unknown): void => {
  if (value === undefined || value === null) return
  if (!isObject(value) || value["anchor"] !== "created_at") {
    throw invalidRequest("Invalid 'output_expires_after.anchor': expected 'created_at'.", "output_expires_after.anchor", "invalid_value")
  }
  const seconds = value["seconds"]
  if (typeof seconds !== "number" || !Number.isInteger(seconds) || seconds < 3600 || seconds > 2_592_000) {
    throw invalidRequest("Invalid 'output_expires_after.seconds': expected an integer between 3600 and 2592000.", "output_expires_after.seconds", "invalid_value")
  }
}
