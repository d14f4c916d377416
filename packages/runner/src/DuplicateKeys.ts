/**
 * Duplicate keys within a stage, found in bounded memory. Every row of the first stage gives
 * one key record — its identity (the row key, or the custom_id when the stage makes its own),
 * a digest of its request, its position and its location — and the records are sorted by
 * identity with an external sort, so ten million rows cost a few runs on disk, never a set of
 * every key. Rows that share an identity form a group:
 *
 * - every request the same: the first row is the request; each later one is a `duplicate`
 *   (not sent: its answer is the first's);
 * - requests that differ: every row of the group is a `conflict` (which one is meant cannot be
 *   told), to be refused or left out as the pipeline's `onInvalid` says.
 *
 * The verdicts come out in another sorter, by position (source order). Used by the run (see
 * KeyCheck.ts) and by `sluice estimate`.
 */
import type { Pipeline } from "@sluice/core"
import type { PlatformError } from "@effect/platform/Error"
import type { FileSystem } from "@effect/platform"
import { Effect, Exit, Scope } from "effect"
import type * as ExternalSort from "./internal/ExternalSort.js"
import * as RecordFile from "./internal/RecordFile.js"

/**
 * True when a stage's rows can share a key: the pipeline keys its rows itself, the stage makes
 * its own custom_ids, or a transform before the stage fans rows out (children keyed
 * `<parent>.<suffix>`). Content keys (no `key` function) carry an occurrence counter: unique.
 */
export const possible = (pipeline: Pipeline.Pipeline<any, any>, stage: Pipeline.BatchStage<any, any>, before: ReadonlyArray<Pipeline.Transform>): boolean =>
  pipeline.key !== undefined || stage.customId !== undefined || before.some((t) => t.fansOut)

// ---------------------------------------------------------------------------------------------
// Key records: [hash u32 BE][major u32][minor u32][digest 8 bytes][tokens u32][identity][location]
// (strings as a u32 length and UTF-8 bytes). `major`/`minor` give source order: the shard and
// the row in it for a run, the source item and the child for an estimate.
// ---------------------------------------------------------------------------------------------

const ID_AT = 24

let scratch = Buffer.allocUnsafe(4096)

/** Murmur3's 32-bit hash of `bytes[from, to)`: spreads keys evenly for the sort's prefix. */
const hash32 = (bytes: Buffer, from: number, to: number): number => {
  let h = 0x9747b28c
  let i = from
  for (; i + 4 <= to; i += 4) {
    let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24)
    k = Math.imul(k, 0xcc9e2d51)
    k = (k << 15) | (k >>> 17)
    h ^= Math.imul(k, 0x1b873593)
    h = (h << 13) | (h >>> 19)
    h = (Math.imul(h, 5) + 0xe6546b64) | 0
  }
  let k = 0
  switch (to - i) {
    case 3:
      k ^= bytes[i + 2]! << 16
    // falls through
    case 2:
      k ^= bytes[i + 1]! << 8
    // falls through
    case 1:
      k ^= bytes[i]!
      k = Math.imul(k, 0xcc9e2d51)
      k = (k << 15) | (k >>> 17)
      h ^= Math.imul(k, 0x1b873593)
  }
  h ^= to - from
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/**
 * The key record of one row. The returned bytes are valid until the next call: append or
 * add them (both copy) at once.
 */
export const keyRecord = (identity: string, digestHex: string, major: number, minor: number, location: string, tokens = 0): Buffer => {
  const need = ID_AT + 8 + 3 * (identity.length + location.length)
  if (scratch.length < need) scratch = Buffer.allocUnsafe(need * 2)
  const b = scratch
  b.writeUInt32LE(major, 4)
  b.writeUInt32LE(minor, 8)
  b.write(digestHex.slice(0, 16), 12, 8, "hex")
  b.writeUInt32LE(tokens, 20)
  const idLength = b.write(identity, ID_AT + 4, "utf8")
  b.writeUInt32LE(idLength, ID_AT)
  const locAt = ID_AT + 4 + idLength
  const locLength = b.write(location, locAt + 4, "utf8")
  b.writeUInt32LE(locLength, locAt)
  b.writeUInt32BE(hash32(b, ID_AT + 4, ID_AT + 4 + idLength), 0)
  return b.subarray(0, locAt + 4 + locLength)
}

const idEnd = (r: Buffer) => ID_AT + 4 + r.readUInt32LE(ID_AT)

const sameIdentity = (a: Buffer, b: Buffer): boolean =>
  a.readUInt32BE(0) === b.readUInt32BE(0) && a.compare(b, ID_AT, idEnd(b), ID_AT, idEnd(a)) === 0

const sameRequest = (a: Buffer, b: Buffer): boolean => a.compare(b, 12, 20, 12, 20) === 0

const string = (r: Buffer, at: number): { readonly text: string; readonly end: number } => {
  const length = r.readUInt32LE(at)
  return { text: r.toString("utf8", at + 4, at + 4 + length), end: at + 4 + length }
}

/** Key records by identity (hash first, then the identity's bytes). */
export const keyOrder: ExternalSort.Order = {
  prefix: (bytes, at) => bytes.readUInt32BE(at),
  compare: (a, b) => a.readUInt32BE(0) - b.readUInt32BE(0) || a.compare(b, ID_AT, idEnd(b), ID_AT, idEnd(a))
}

// ---------------------------------------------------------------------------------------------
// Verdicts: [major u32 BE][minor u32 BE][kind u8][rows u32][tokens u32][identity][location][other location]
// ---------------------------------------------------------------------------------------------

export interface Verdict {
  readonly major: number
  readonly minor: number
  /** `duplicate`: same identity and request as an earlier row; `conflict`: same identity, another request. */
  readonly kind: "duplicate" | "conflict"
  /** Rows with this identity. */
  readonly rows: number
  /** The row's input tokens, where the records counted them. */
  readonly tokens: number
  readonly identity: string
  readonly location: string
  /** Where another row with this identity is: the first one, or for the first one the second. */
  readonly other: string
}

const verdictRecord = (row: Buffer, kind: Verdict["kind"], rows: number, other: Buffer): Buffer => {
  const id = row.subarray(ID_AT, idEnd(row))
  const loc = row.subarray(idEnd(row))
  const firstLoc = other.subarray(idEnd(other))
  const b = Buffer.allocUnsafe(17 + id.length + loc.length + firstLoc.length)
  b.writeUInt32BE(row.readUInt32LE(4), 0)
  b.writeUInt32BE(row.readUInt32LE(8), 4)
  b.writeUInt8(kind === "duplicate" ? 0 : 1, 8)
  b.writeUInt32LE(rows, 9)
  b.writeUInt32LE(row.readUInt32LE(20), 13)
  id.copy(b, 17)
  loc.copy(b, 17 + id.length)
  firstLoc.copy(b, 17 + id.length + loc.length)
  return b
}

export const decodeVerdict = (r: Buffer): Verdict => {
  const identity = string(r, 17)
  const location = string(r, identity.end)
  const other = string(r, location.end)
  return {
    major: r.readUInt32BE(0),
    minor: r.readUInt32BE(4),
    kind: r.readUInt8(8) === 0 ? "duplicate" : "conflict",
    rows: r.readUInt32LE(9),
    tokens: r.readUInt32LE(13),
    identity: identity.text,
    location: location.text,
    other: other.text
  }
}

/** Verdicts by position. */
export const verdictOrder: ExternalSort.Order = {
  prefix: (bytes, at) => bytes.readUInt32BE(at),
  compare: (a, b) => a.readUInt32BE(0) - b.readUInt32BE(0) || a.readUInt32BE(4) - b.readUInt32BE(4)
}

export interface Found {
  /** Rows with the same identity and request as an earlier row. */
  readonly duplicates: number
  /** Rows whose identity another row has with a different request. */
  readonly conflictRows: number
  /** Identities with conflicting rows. */
  readonly conflictKeys: number
}

/**
 * Walks key records sorted by `keyOrder` (and by position within an identity: add them in
 * source order, the sort is stable) and adds a verdict for every duplicate and conflicting
 * row to `verdicts`. A group of rows is held in memory up to `maxGroup` members, the rest in a
 * spool file in `spoolDir`.
 */
export const find = (
  keys: ExternalSort.Sorter,
  verdicts: ExternalSort.Sorter,
  options: { readonly spoolDir: string; readonly maxGroup?: number }
): Effect.Effect<Found, PlatformError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    // The second row of a group stays in memory: the first one's verdict names it.
    const maxGroup = Math.max(1, options.maxGroup ?? 100_000)
    const spoolPath = `${options.spoolDir}/group.bin`
    let duplicates = 0
    let conflictRows = 0
    let conflictKeys = 0
    // The group at hand: its first record, the others (copied; past `maxGroup`, spooled).
    let first: Buffer | undefined
    let count = 0
    let same = true
    let members: Array<Buffer> = []
    // A big group's spool file, open for that group only.
    let spool: { readonly writer: RecordFile.RecordWriter; readonly scope: Scope.CloseableScope } | undefined

    const add = (record: Buffer): Effect.Effect<void, PlatformError> | undefined => verdicts.add(record)

    /** Ends the group at hand, returning an Effect when it had several rows. */
    const close = (): Effect.Effect<void, PlatformError, FileSystem.FileSystem> | undefined => {
      if (first === undefined || count < 2) return undefined
      const head = first
      const rest = members
      const spooled = spool
      const rows = count
      const kind = same ? "duplicate" : "conflict"
      if (same) duplicates += rows - 1
      else {
        conflictRows += rows
        conflictKeys++
      }
      return Effect.gen(function* () {
        if (kind === "conflict") {
          const io = add(verdictRecord(head, kind, rows, rest[0]!))
          if (io !== undefined) yield* io
        }
        for (const m of rest) {
          const io = add(verdictRecord(m, kind, rows, head))
          if (io !== undefined) yield* io
        }
        if (spooled !== undefined) {
          yield* spooled.writer.flush
          yield* RecordFile.forEach(spoolPath, (m) => add(verdictRecord(m, kind, rows, head)))
          yield* Scope.close(spooled.scope, Exit.void)
        }
      })
    }

    const visit = (record: Buffer): Effect.Effect<void, PlatformError, FileSystem.FileSystem> | undefined => {
      if (first !== undefined && sameIdentity(first, record)) {
        count++
        if (same && !sameRequest(first, record)) same = false
        if (members.length < maxGroup) {
          members.push(Buffer.from(record))
          return undefined
        }
        if (spool !== undefined) return spool.writer.append(record) ? spool.writer.flush : undefined
        return Effect.gen(function* () {
          const scope = yield* Scope.make()
          const writer = yield* RecordFile.create(spoolPath).pipe(Scope.extend(scope))
          writer.append(record)
          spool = { writer, scope }
        })
      }
      const done = close()
      first = record
      count = 1
      same = true
      members = []
      spool = undefined
      return done
    }

    yield* keys.forEach(visit)
    const last = close()
    if (last !== undefined) yield* last
    return { duplicates, conflictRows, conflictKeys } satisfies Found
  })

/** One line naming a row and what is wrong with its key. */
export const describe = (v: Verdict, what: "key" | "custom_id"): string =>
  v.kind === "duplicate"
    ? `${v.location}: ${what} ${JSON.stringify(v.identity)} and its request repeat the row at ${v.other}`
    : `${v.location}: ${what} ${JSON.stringify(v.identity)} is used by ${v.rows} rows with different requests (another at ${v.other})`
