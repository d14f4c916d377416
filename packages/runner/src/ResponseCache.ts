/**
 * The response cache: provider answers stored by the hash of the exact request, shared by
 * every run, stage and pipeline that points at the same directory. A request answered
 * before is served from here instead of being submitted again, and because each answer
 * keeps the provider's `raw` response body, a changed parse step re-derives its outputs
 * from stored answers without any API call.
 *
 * **Layout.** Everything lives under `<dir>/v1/` (the format version):
 *
 * - `seg-<ms since epoch>-<pid>-<8 hex>.jsonl` — a data segment: one answer per line, the
 *   JSON object `{"text","finishReason","usage","raw"}` and nothing else (no key, no
 *   request, no secret).
 * - `seg-<…>.idx` — its index: one line `<key> <offset> <length>\n` per answer, where key is
 *   the 64-hex request hash made by `key`, and offset/length (decimal bytes, newline
 *   excluded) locate the answer in the sibling `.jsonl`.
 *
 * Each `open` writes at most one segment of its own, created at its first non-empty flush;
 * segments are never modified by anyone else and never rewritten.
 *
 * **Crash behaviour.** A flush writes the data, fsyncs it, and only then writes and fsyncs
 * the index lines, so an index entry never points at data that is not on disk. `open`
 * skips, without error, every index line that is not complete and well formed (a torn last
 * line after a crash mid-write) and every entry whose range lies past the end of its data
 * segment (a truncated segment); a segment whose `.jsonl` is missing is skipped whole.
 * Data past the last index entry is dead bytes. A process killed at any point therefore
 * leaves a cache that opens and holds every answer it had flushed. `read` also returns
 * undefined for a stored range that does not hold a JSON object.
 *
 * **Concurrency.** Writers never share a file: each process (each `open`, in fact) appends
 * to its own uniquely named segment, so concurrent writers — two runs of different
 * pipelines, say — never interleave bytes and need no lock. A reader skips the incomplete
 * last line of a segment another process is still writing. The in-memory index is loaded
 * once at `open`: answers another process writes later are not seen until the next `open`
 * (the same request may then be stored twice, in two segments; either copy serves).
 * Answers `put` by this process are visible to `has`/`read` at once, from the buffer,
 * before they are flushed. Within one process, flushes are serialised.
 *
 * **Memory.** The index holds no strings: each entry's key is kept as 32 bytes, and its
 * location as a segment number (4 bytes), offset (8) and length (4), in typed arrays sized
 * at `open` for the entries found, with an open-addressing table of 4-byte slots (load
 * ≤ 0.7) over them. Measured with 1M entries in 4 segments: 56 MB, about 57 bytes per entry
 * (48 of data, the rest table slack), against about 110 for a `Map` keyed by the hex
 * string; `open` took 0.8 s. While `open` runs, the index files are held in memory too
 * (about 80 bytes per entry, released when it returns). Answers are read from disk on
 * demand, one `readSync` each, through at most 64 open read descriptors.
 *
 * **Privacy.** The answers are the user's data: the directories are created 0700 and the
 * segments 0600 (internal/PrivateFiles.ts).
 *
 * **Clearing.** Delete the directory (`rm -rf <dir>`) or its `v1/` folder; the next run's
 * first flush recreates it. Best while no run uses it: a process that has the cache open
 * keeps appending to its own (now deleted) segment, so its further answers are lost —
 * nothing breaks. Deleting single `seg-*` pairs is safe too.
 * Turning the cache off is `disabled` (the runner's `SLUICE_CACHE=off`).
 */
import { Effect, Schema } from "effect"
import type { Scope } from "effect"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import type { FileHandle } from "node:fs/promises"
import * as path from "node:path"
import * as PrivateFiles from "./internal/PrivateFiles.js"
import { withRaw } from "./internal/resultLine.js"

export class CacheError extends Schema.TaggedError<CacheError>()("CacheError", {
  path: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `response cache ${this.path}: ${this.description}`
  }
}

/** A neutral Succeeded result without its custom_id. */
export interface CachedAnswer {
  readonly text: string
  readonly finishReason: string | null
  readonly usage: { readonly inputTokens: number; readonly outputTokens: number; readonly cachedInputTokens: number } | null
  readonly raw: unknown
}

export interface ResponseCache {
  /** Synchronous (called per row in hot loops): whether an answer for this key is stored. */
  readonly has: (key: string) => boolean
  /**
   * Synchronous read of a stored answer as its JSON text — an object with the fields of
   * `CachedAnswer` — or undefined if absent or unreadable.
   */
  readonly read: (key: string) => string | undefined
  /**
   * Buffers one answer (synchronous, cheap); returns true when `flush` should run. Ignores
   * keys already stored (or buffered), returning false. `key` must come from `key()`.
   */
  readonly put: (key: string, answer: CachedAnswer) => boolean
  /** `put` of an answer already encoded with `encodeAnswer` (a caller that needs the JSON anyway saves a stringify). */
  readonly putEncoded: (key: string, json: string) => boolean
  /** Writes buffered answers durably (data fsynced before its index entries are written). */
  readonly flush: Effect.Effect<void, CacheError>
  /** The number of distinct answers stored, buffered ones included. */
  readonly size: () => number
}

/** The cache key of a request: hex SHA-256 of `namespace + "\n" + JSON.stringify(request)`. */
export const key = (namespace: string, request: unknown): string =>
  createHash("sha256").update(namespace + "\n" + JSON.stringify(request)).digest("hex")

/** No cache: nothing is stored, nothing is found. */
export const disabled: ResponseCache = {
  has: () => false,
  read: () => undefined,
  put: () => false,
  putEncoded: () => false,
  flush: Effect.void,
  size: () => 0
}

/** Consecutive failed flushes after which this process stops storing answers. */
const GIVE_UP_AFTER = 2

/** `put` asks for a flush once this many bytes (about) are buffered. */
const FLUSH_AT = 1 << 20
/** A flush writes the data in pieces of about this size. */
const WRITE_CHUNK = 4 << 20
/** Read descriptors kept open at most (least recently used are closed). */
const MAX_READ_FDS = 64
const VERSION_DIR = "v1"
const SEGMENT = /^seg-[A-Za-z0-9-]+\.idx$/

/**
 * Opens (or starts) the cache in `dir`, loading the index of every segment. A missing
 * directory is an empty cache, created at the first flush; one that cannot be read is a
 * CacheError naming it. Buffered answers are flushed when the scope closes (a failure
 * there is logged, not raised).
 */
export const open = (dir: string): Effect.Effect<ResponseCache, CacheError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.try({
      try: () => Store.load(dir),
      catch: (e) => (e instanceof CacheError ? e : new CacheError({ path: dir, description: describe(e) }))
    }),
    (store) =>
      store.api.flush.pipe(
        Effect.catchAll((e) => Effect.logWarning(`response cache not written: ${e.message}`)),
        Effect.zipRight(Effect.promise(() => store.close()))
      )
  ).pipe(Effect.map((store) => store.api))

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

interface Writer {
  readonly segment: number
  readonly dataPath: string
  readonly idxPath: string
  readonly data: FileHandle
  readonly idx: FileHandle
  dataSize: number
  idxSize: number
}

class Store {
  private readonly index = new KeyIndex()
  /** Data segment paths; an entry's segment is its position here. */
  private readonly segments: Array<string> = []
  /** Open read descriptors by segment, in least-recently-used order (-1: could not open). */
  private readonly fds = new Map<number, number>()
  /** Answers put and not yet being written, as JSON text. */
  private pending = new Map<string, string>()
  private pendingBytes = 0
  /** Answers being written by the current flush. */
  private inflight = new Map<string, string>()
  private writer: Writer | undefined
  private closed = false
  /** Flushes failed in a row; at GIVE_UP_AFTER the cache stops storing (see `write`). */
  private failures = 0
  private gaveUp = false
  private readonly scratch = new Uint32Array(8)
  private readonly lock = Effect.unsafeMakeSemaphore(1)

  private constructor(private readonly dir: string) {}

  static load(dir: string): Store {
    const store = new Store(dir)
    const root = path.join(dir, VERSION_DIR)
    let names: Array<string>
    try {
      names = fs.readdirSync(root)
    } catch (e) {
      if (code(e) === "ENOENT") {
        // No cache yet; but a `dir` that exists and is not a readable directory is an error.
        checkDir(dir)
        return store
      }
      throw new CacheError({ path: root, description: describe(e) })
    }
    // Oldest first (names start with the creation time), so the first copy of a key wins.
    const idxNames = names.filter((n) => SEGMENT.test(n)).sort()
    let lines = 0
    const buffers: Array<Buffer | undefined> = []
    for (const name of idxNames) {
      const idxPath = path.join(root, name)
      let buf: Buffer | undefined
      try {
        buf = fs.readFileSync(idxPath)
        for (let at = buf.indexOf(10); at >= 0; at = buf.indexOf(10, at + 1)) lines++
      } catch (e) {
        if (code(e) !== "ENOENT") throw new CacheError({ path: idxPath, description: describe(e) })
      }
      buffers.push(buf)
    }
    // Sized once for every entry (plus a little room for this run's answers).
    store.index.reserve(lines + 1024)
    idxNames.forEach((name, i) => {
      const buf = buffers[i]
      buffers[i] = undefined
      if (buf === undefined) return
      const dataPath = path.join(root, name.slice(0, -".idx".length) + ".jsonl")
      // The data's size is taken after its index was read: a concurrent writer fsyncs data
      // before index lines, so every index line read points into this size.
      let size: number
      try {
        size = fs.statSync(dataPath).size
      } catch (e) {
        if (code(e) === "ENOENT") return
        throw new CacheError({ path: dataPath, description: describe(e) })
      }
      store.segments.push(dataPath)
      store.loadIndex(buf, store.segments.length - 1, size)
    })
    return store
  }

  /** Adds every complete, well-formed line of an index file whose range fits `size`. */
  private loadIndex(buf: Buffer, segment: number, size: number): void {
    const words = this.scratch
    let pos = 0
    for (;;) {
      const nl = buf.indexOf(10, pos)
      if (nl < 0) return // a torn last line, or none
      const line = pos
      pos = nl + 1
      if (nl - line < 68 || !hexFromBytes(buf, line, words) || buf[line + 64] !== 32) continue
      let i = line + 65
      let offset = 0
      let digits = 0
      for (; i < nl && buf[i] !== 32; i++, digits++) {
        const d = buf[i]! - 48
        if (d < 0 || d > 9) break
        offset = offset * 10 + d
      }
      if (digits === 0 || digits > 15 || buf[i] !== 32) continue
      i++
      let length = 0
      digits = 0
      for (; i < nl; i++, digits++) {
        const d = buf[i]! - 48
        if (d < 0 || d > 9) break
        length = length * 10 + d
      }
      if (digits === 0 || digits > 10 || i !== nl || length < 2 || length > 0xffffffff) continue
      if (offset + length > size) continue // data lost in a crash, or a truncated segment
      this.index.insert(words, segment, offset, length)
    }
  }

  readonly api: ResponseCache = {
    has: (key) => this.pending.has(key) || this.inflight.has(key) || (hexFromString(key, this.scratch) && this.index.find(this.scratch) >= 0),
    read: (key) => this.read(key),
    put: (key, answer) => this.put(key, encodeAnswer(answer)),
    putEncoded: (key, json) => this.put(key, json),
    flush: Effect.suspend(() => this.flush),
    size: () => this.index.count + this.pending.size + this.inflight.size
  }

  private read(key: string): string | undefined {
    const buffered = this.pending.get(key) ?? this.inflight.get(key)
    if (buffered !== undefined) return buffered
    if (this.closed || !hexFromString(key, this.scratch)) return undefined
    const entry = this.index.find(this.scratch)
    if (entry < 0) return undefined
    const fd = this.fd(this.index.segmentOf(entry))
    if (fd < 0) return undefined
    const offset = this.index.offsetOf(entry)
    const length = this.index.lengthOf(entry)
    try {
      const buf = Buffer.allocUnsafe(length)
      let got = 0
      while (got < length) {
        const n = fs.readSync(fd, buf, got, length - got, offset + got)
        if (n === 0) return undefined
        got += n
      }
      // Anything but a JSON object here is damage the index could not see.
      if (buf[0] !== 0x7b || buf[length - 1] !== 0x7d) return undefined
      return buf.toString("utf8")
    } catch {
      return undefined
    }
  }

  private fd(segment: number): number {
    const open = this.fds.get(segment)
    if (open !== undefined) {
      this.fds.delete(segment)
      this.fds.set(segment, open)
      return open
    }
    let fd: number
    try {
      fd = fs.openSync(this.segments[segment]!, "r")
    } catch {
      fd = -1
    }
    this.fds.set(segment, fd)
    if (this.fds.size > MAX_READ_FDS) {
      const [oldest, oldFd] = this.fds.entries().next().value!
      this.fds.delete(oldest)
      if (oldFd >= 0) closeQuietly(oldFd)
    }
    return fd
  }

  private put(key: string, json: string): boolean {
    if (!hexFromString(key, this.scratch)) throw new Error(`response cache: not a cache key: ${JSON.stringify(key)}`)
    if (this.gaveUp) return false
    if (this.pending.has(key) || this.inflight.has(key) || this.index.find(this.scratch) >= 0) return false
    this.pending.set(key, json)
    this.pendingBytes += json.length + 1
    return this.pendingBytes >= FLUSH_AT
  }

  private readonly flush: Effect.Effect<void, CacheError> = this.lock.withPermits(1)(
    Effect.tryPromise({
      try: () => this.write(),
      catch: (e) => (e instanceof CacheError ? e : new CacheError({ path: this.dir, description: describe(e) }))
    })
  ).pipe(Effect.uninterruptible)

  private async write(): Promise<void> {
    if (this.pending.size === 0) return
    const batch = this.pending
    this.inflight = batch
    this.pending = new Map()
    this.pendingBytes = 0
    try {
      const writer = this.writer ?? (this.writer = await this.createSegment())
      const keys: Array<string> = []
      const offsets: Array<number> = []
      const lengths: Array<number> = []
      let at = writer.dataSize
      let chunk: Array<Buffer> = []
      let chunkBytes = 0
      const writeChunk = async () => {
        await writeAll(writer.data, Buffer.concat(chunk, chunkBytes), at - chunkBytes, writer.dataPath)
        chunk = []
        chunkBytes = 0
      }
      for (const [k, json] of batch) {
        const bytes = Buffer.from(json + "\n", "utf8")
        keys.push(k)
        offsets.push(at)
        lengths.push(bytes.length - 1)
        chunk.push(bytes)
        chunkBytes += bytes.length
        at += bytes.length
        if (chunkBytes >= WRITE_CHUNK) await writeChunk()
      }
      if (chunkBytes > 0) await writeChunk()
      await sync(writer.data, writer.dataPath)
      let lines = ""
      for (let i = 0; i < keys.length; i++) lines += `${keys[i]} ${offsets[i]} ${lengths[i]}\n`
      const idxBytes = Buffer.from(lines, "utf8")
      await writeAll(writer.idx, idxBytes, writer.idxSize, writer.idxPath)
      await sync(writer.idx, writer.idxPath)
      // Committed: positions advance only now, so a failed flush is retried over the same
      // bytes and never leaves a gap or a torn line in the middle of a file.
      writer.dataSize = at
      writer.idxSize += idxBytes.length
      for (let i = 0; i < keys.length; i++) {
        hexFromString(keys[i]!, this.scratch)
        this.index.insert(this.scratch, writer.segment, offsets[i]!, lengths[i]!)
      }
      this.inflight = new Map()
      this.failures = 0
    } catch (e) {
      this.inflight = new Map()
      if (++this.failures >= GIVE_UP_AFTER) {
        // A cache that cannot be written (a read-only directory, a full disk) must not keep
        // every answer of a run in memory: stop storing, for the rest of this process.
        this.gaveUp = true
        this.pending = new Map()
        this.pendingBytes = 0
        throw e
      }
      // Keep the answers for the next flush, in their order, ahead of newer ones.
      for (const [k, json] of this.pending) batch.set(k, json)
      this.pending = batch
      for (const json of batch.values()) this.pendingBytes += json.length + 1
      throw e
    }
  }

  private async createSegment(): Promise<Writer> {
    const root = path.join(this.dir, VERSION_DIR)
    try {
      PrivateFiles.makeDirectorySync(root)
    } catch (e) {
      throw new CacheError({ path: root, description: describe(e) })
    }
    const name = `seg-${Date.now()}-${process.pid}-${randomBytes(4).toString("hex")}`
    const dataPath = path.join(root, name + ".jsonl")
    const idxPath = path.join(root, name + ".idx")
    const data = await openNew(dataPath)
    const idx = await openNew(idxPath).catch(async (e) => {
      await data.close().catch(() => undefined)
      throw e
    })
    this.segments.push(dataPath)
    return { segment: this.segments.length - 1, dataPath, idxPath, data, idx, dataSize: 0, idxSize: 0 }
  }

  async close(): Promise<void> {
    this.closed = true
    for (const fd of this.fds.values()) if (fd >= 0) closeQuietly(fd)
    this.fds.clear()
    const writer = this.writer
    this.writer = undefined
    if (writer !== undefined) {
      await writer.data.close().catch(() => undefined)
      await writer.idx.close().catch(() => undefined)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The in-memory index: 32-byte keys and their locations in typed arrays
// ---------------------------------------------------------------------------------------------

/**
 * An insert-only hash set of 256-bit keys with a location per key. Entries are stored
 * densely (8 key words, segment, offset, length); `slots` is an open-addressing table
 * (linear probing) of entry numbers + 1, hashed by the key's first word — the keys are
 * SHA-256 digests, so any 32 bits of them are uniformly distributed.
 */
class KeyIndex {
  count = 0
  private capacity = 0
  private words = new Uint32Array(0)
  private segment = new Uint32Array(0)
  private offset = new Float64Array(0)
  private length = new Uint32Array(0)
  private slots = new Int32Array(1024)
  private mask = 1023

  constructor() {
    this.reserve(1024)
  }

  /** Makes room for `n` entries in all. */
  reserve(n: number): void {
    if (n > this.capacity) {
      const capacity = Math.max(n, Math.ceil(this.capacity * 1.5))
      const words = new Uint32Array(capacity * 8)
      words.set(this.words)
      const segment = new Uint32Array(capacity)
      segment.set(this.segment)
      const offset = new Float64Array(capacity)
      offset.set(this.offset)
      const length = new Uint32Array(capacity)
      length.set(this.length)
      this.words = words
      this.segment = segment
      this.offset = offset
      this.length = length
      this.capacity = capacity
    }
    let slots = this.slots.length
    while (n > slots * 0.7) slots *= 2
    if (slots > this.slots.length) this.rehash(slots)
  }

  private rehash(size: number): void {
    this.slots = new Int32Array(size)
    this.mask = size - 1
    for (let e = 0; e < this.count; e++) {
      let s = this.words[e * 8]! & this.mask
      while (this.slots[s] !== 0) s = (s + 1) & this.mask
      this.slots[s] = e + 1
    }
  }

  /** The entry number of `key` (8 words), or -1. */
  find(key: Uint32Array): number {
    const w = this.words
    let s = key[0]! & this.mask
    for (;;) {
      const slot = this.slots[s]!
      if (slot === 0) return -1
      const b = (slot - 1) * 8
      if (
        w[b] === key[0] && w[b + 1] === key[1] && w[b + 2] === key[2] && w[b + 3] === key[3] &&
        w[b + 4] === key[4] && w[b + 5] === key[5] && w[b + 6] === key[6] && w[b + 7] === key[7]
      ) return slot - 1
      s = (s + 1) & this.mask
    }
  }

  /** Adds `key` with its location; false (and nothing changed) when it is already there. */
  insert(key: Uint32Array, segment: number, offset: number, length: number): boolean {
    if (this.find(key) >= 0) return false
    if (this.count + 1 > this.capacity || this.count + 1 > this.slots.length * 0.7) this.reserve(this.count + 1)
    const e = this.count++
    this.words.set(key, e * 8)
    this.segment[e] = segment
    this.offset[e] = offset
    this.length[e] = length
    let s = key[0]! & this.mask
    while (this.slots[s] !== 0) s = (s + 1) & this.mask
    this.slots[s] = e + 1
    return true
  }

  segmentOf(entry: number): number {
    return this.segment[entry]!
  }
  offsetOf(entry: number): number {
    return this.offset[entry]!
  }
  lengthOf(entry: number): number {
    return this.length[entry]!
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** The value of one lowercase hex digit, or -1. */
const hexDigit = (c: number): number => (c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1)

/** Parses a 64-char lowercase hex key into 8 words; false if it is not one. */
const hexFromString = (key: string, into: Uint32Array): boolean => {
  if (key.length !== 64) return false
  for (let i = 0; i < 8; i++) {
    let word = 0
    for (let j = 0; j < 8; j++) {
      const d = hexDigit(key.charCodeAt(i * 8 + j))
      if (d < 0) return false
      word = (word << 4) | d
    }
    into[i] = word >>> 0
  }
  return true
}

/** Parses 64 lowercase hex bytes of `buf` at `at` into 8 words; false if they are not. */
const hexFromBytes = (buf: Buffer, at: number, into: Uint32Array): boolean => {
  for (let i = 0; i < 8; i++) {
    let word = 0
    for (let j = 0; j < 8; j++) {
      const d = hexDigit(buf[at + i * 8 + j]!)
      if (d < 0) return false
      word = (word << 4) | d
    }
    into[i] = word >>> 0
  }
  return true
}

/**
 * An answer as the cache stores it: `{"text","finishReason","usage","raw"}`, in that order (the
 * text always starts `{"text":`); `raw` as received when the provider's line is at hand.
 */
export const encodeAnswer = (answer: CachedAnswer & { readonly rawText?: string | undefined }): string =>
  withRaw(
    JSON.stringify({
      text: answer.text,
      finishReason: answer.finishReason,
      usage:
        answer.usage === null
          ? null
          : {
            inputTokens: answer.usage.inputTokens,
            outputTokens: answer.usage.outputTokens,
            cachedInputTokens: answer.usage.cachedInputTokens
          }
    }),
    answer
  )

const openNew = async (file: string): Promise<FileHandle> => {
  try {
    return await PrivateFiles.createNew(file)
  } catch (e) {
    throw new CacheError({ path: file, description: describe(e) })
  }
}

/** Writes all of `bytes` at `position` (positional, so a retried flush overwrites in place). */
const writeAll = async (handle: FileHandle, bytes: Buffer, position: number, file: string): Promise<void> => {
  try {
    let done = 0
    while (done < bytes.length) {
      const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done)
      done += bytesWritten
    }
  } catch (e) {
    throw new CacheError({ path: file, description: describe(e) })
  }
}

const sync = async (handle: FileHandle, file: string): Promise<void> => {
  try {
    await handle.sync()
  } catch (e) {
    throw new CacheError({ path: file, description: describe(e) })
  }
}

const checkDir = (dir: string): void => {
  try {
    fs.readdirSync(dir)
  } catch (e) {
    if (code(e) !== "ENOENT") throw new CacheError({ path: dir, description: describe(e) })
  }
}

const closeQuietly = (fd: number): void => {
  try {
    fs.closeSync(fd)
  } catch {
    // already closed
  }
}

const code = (e: unknown): string | undefined =>
  typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : undefined

const describe = (e: unknown): string => (e instanceof Error ? e.message : String(e))
