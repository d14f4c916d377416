/**
 * Content hashes used for identity (custom_id), fingerprints and shard checksums.
 * SHA-256 from node:crypto: stable across processes and machines, which identity needs.
 */
import { createHash } from "node:crypto"

/** Hex SHA-256 of a string or bytes. */
export const sha256 = (data: string | Uint8Array): string => createHash("sha256").update(data).digest("hex")

/**
 * JSON with object keys sorted, so that two equal values always hash the same
 * whatever order their keys were built in.
 */
export const canonicalJson = (value: unknown): string => JSON.stringify(sortKeys(value))

const sortKeys = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(sortKeys)
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {}
    for (const k of Object.keys(value as object).sort()) {
      const v = (value as Record<string, unknown>)[k]
      if (v !== undefined) out[k] = sortKeys(v)
    }
    return out
  }
  return value
}

/** Short hex digest of the canonical JSON of a value. */
export const hashValue = (value: unknown, length = 16): string => sha256(canonicalJson(value)).slice(0, length)
