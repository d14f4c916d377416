/**
 * Hashing helpers. Every "random" decision of the emulator (answers, fault
 * selection, result order) derives from a hash of the request so the same
 * input always gives the same output, across restarts.
 */
import { hash, randomBytes } from "node:crypto"

// One-shot crypto.hash (Node >= 20.12) is measurably cheaper than createHash for short inputs,
// and hashing is on the per-line hot path of validation and result writing.
export const sha1 = (text: string): Buffer => hash("sha1", text, "buffer")
export const sha256 = (text: string): Buffer => hash("sha256", text, "buffer")

/**
 * Unique per (batch, request) hex id without another hash per line: the
 * request digest XOR a per-batch key (indexes wrap around both buffers).
 */
export const mixHex = (digest: Buffer, key: Buffer, bytes: number, offset = 0): string => {
  const out = Buffer.allocUnsafe(bytes)
  for (let i = 0; i < bytes; i++) out[i] = digest[(i + offset) % digest.length]! ^ key[(i + offset) % key.length]!
  return out.toString("hex")
}

/** A number in [0, 1) read from 4 bytes of a digest. */
export const fractionAt = (digest: Buffer, offset: number): number => digest.readUInt32BE(offset) / 0x1_0000_0000

/** Random ids (file-, batch_): identity only, never part of an answer. */
export const randomHex = (bytes: number): string => randomBytes(bytes).toString("hex")

/** mulberry32: a tiny seeded PRNG, enough to walk a JSON schema deterministically. */
export const seededRandom = (seed: number): (() => number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 0x1_0000_0000
  }
}

/**
 * Digest of one batch request, the key of every per-request decision:
 * bytes 0-3 processing order, 4-7 errorRate, 8-11 invalidJsonRate, 12-15 dropLines.
 */
export const requestDigest = (seed: string, customId: string, bodyJson: string): Buffer =>
  sha1(`${seed}\u0000${customId}\u0000${bodyJson}`)

export const DigestOffset = { order: 0, error: 4, invalidJson: 8, drop: 12 } as const
