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
 * **Memory.** The index holds no keys: per answer, the first 32 bits of its key and the
 * position of its `.idx` line (internal/CacheIndex.ts, 9 bytes a slot, about 13 bytes an
 * entry). A lookup whose 32 bits match reads that line back (through a 1 MiB cache of 4 KiB
 * blocks of the index files) and compares the full key, so an answer is never served for
 * another key, and takes the answer's place from it. Measured with 1M entries in 4 segments
 * (`bench/cache-index.ts`): 12.8 MB, against 54–108 MB for the 32-byte keys and locations
 * kept before; a miss costs what it did (~0.7 µs), a hit about 1 µs more (one more read of a
 * cached block). `open` reads the index files in 1 MiB pieces, twice (the first pass counts
 * the entries to size the table once). Answers are read from disk on demand, one `readSync`
 * each, through at most 64 open read descriptors.
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
import { CacheIndex } from "./internal/CacheIndex.js"
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

interface Segment {
  readonly dataPath: string
  readonly idxPath: string
  /** Where its index file starts in the index positions (all index files end to end). */
  readonly base: number
}

/** Longest well-formed index line with its newline: key, space, 15 digits, space, 10 digits. */
const MAX_LINE = 64 + 1 + 15 + 1 + 10 + 1
/** Index lines are read back (to check a key) in blocks of this size, the last few kept. */
const BLOCK = 4 << 10
const MAX_BLOCKS = 256
/** `open` reads index files in pieces of this size. */
const LOAD_CHUNK = 1 << 20

interface Block {
  readonly buf: Buffer
  /** Bytes read into it (less than BLOCK at the end of a file). */
  valid: number
}

class Store {
  private index = new CacheIndex()
  /** Segments in index-position order; an entry's segment is found from its position. */
  private readonly segments: Array<Segment> = []
  /** Where the next segment's index starts in the index positions. */
  private nextBase = 0
  /** Open read descriptors by segment × 2 (+1 for the index file), least recently used first (-1: could not open). */
  private readonly fds = new Map<number, number>()
  /** Index blocks read back, by segment × 2^28 + block number, least recently used first. */
  private readonly blocks = new Map<number, Block>()
  /** The block used last (most lookups of a run that is answered from the cache are in stored order). */
  private lastBlockId = -1
  private lastBlock: Block | undefined
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
  /** Where the last matching line put its answer (set by `matchesWanted`). */
  private foundSegment = 0
  private foundOffset = 0
  private foundLength = 0
  private readonly lineScratch = Buffer.alloc(MAX_LINE)
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
    const found: Array<{ readonly idxPath: string; readonly dataPath: string; readonly idxSize: number; readonly dataSize: number }> = []
    const chunk = Buffer.allocUnsafe(LOAD_CHUNK)
    let lines = 0
    for (const name of idxNames) {
      const idxPath = path.join(root, name)
      const dataPath = path.join(root, name.slice(0, -".idx".length) + ".jsonl")
      // Only the index bytes there now are read, and the data's size is taken after: a
      // concurrent writer fsyncs data before index lines, so each of them points into it.
      let idxSize: number
      try {
        idxSize = fs.statSync(idxPath).size
      } catch (e) {
        if (code(e) === "ENOENT") continue
        throw new CacheError({ path: idxPath, description: describe(e) })
      }
      let dataSize: number
      try {
        dataSize = fs.statSync(dataPath).size
      } catch (e) {
        if (code(e) === "ENOENT") continue
        throw new CacheError({ path: dataPath, description: describe(e) })
      }
      lines += countLines(idxPath, idxSize, chunk)
      found.push({ idxPath, dataPath, idxSize, dataSize })
    }
    // Sized once for every entry (plus a little room for this run's answers).
    store.index = new CacheIndex(lines + 1024)
    for (const segment of found) {
      const number = store.addSegment(segment.dataPath, segment.idxPath, segment.idxSize)
      const base = store.segments[number]!.base
      scanFile(segment.idxPath, segment.idxSize, chunk, (buf, from, end, start) =>
        store.loadLines(buf, from, end, base + start, segment.dataSize)
      )
    }
    return store
  }

  private addSegment(dataPath: string, idxPath: string, idxSize: number): number {
    this.segments.push({ dataPath, idxPath, base: this.nextBase })
    this.nextBase += idxSize
    return this.segments.length - 1
  }

  /**
   * Adds every complete, well-formed line of `buf` (`from`–`end`) whose range fits `size`;
   * returns how far it consumed (past the last newline). `at` is the index position of `buf[0]`.
   */
  private loadLines(buf: Buffer, from: number, end: number, at: number, size: number): number {
    const words = this.scratch
    let pos = from
    for (;;) {
      const nl = buf.indexOf(10, pos)
      if (nl < 0 || nl >= end) return pos // a line continued in the next piece, or a torn last line
      const line = pos
      pos = nl + 1
      if (!parseLine(buf, line, nl, words)) continue
      if (parsed.offset + parsed.length > size) continue // data lost in a crash, or a truncated segment
      if (this.index.find(words[0]!, this.matchesWanted) >= 0) continue // a second copy
      this.index.add(words[0]!, at + line)
    }
  }

  readonly api: ResponseCache = {
    has: (key) => this.pending.has(key) || this.inflight.has(key) || this.locate(key),
    read: (key) => this.read(key),
    put: (key, answer) => this.put(key, encodeAnswer(answer)),
    putEncoded: (key, json) => this.put(key, json),
    flush: Effect.suspend(() => this.flush),
    size: () => this.index.count + this.pending.size + this.inflight.size
  }

  /** Whether `key` is stored on disk; if so its answer's place is in found*. */
  private locate(key: string): boolean {
    if (this.closed || !hexFromString(key, this.scratch)) return false
    return this.index.find(this.scratch[0]!, this.matchesWanted) >= 0
  }

  /** Whether the index line at `position` holds the key in `scratch`; if so, records its answer's place. */
  private readonly matchesWanted = (position: number): boolean => {
    const segment = this.segmentAt(position)
    const local = position - this.segments[segment]!.base
    const blockNumber = Math.floor(local / BLOCK)
    const block = this.block(segment, blockNumber)
    let buf: Buffer
    let start: number
    let nl: number
    const within = local - blockNumber * BLOCK
    if (block !== undefined && within < block.valid && (nl = newlineIn(block.buf, within, block.valid)) >= 0) {
      buf = block.buf
      start = within
    } else {
      // The line runs past its block, or was written after the block was read.
      const fd = this.fd(segment, true)
      if (fd < 0) return false
      let n: number
      try {
        n = fs.readSync(fd, this.lineScratch, 0, MAX_LINE, local)
      } catch {
        return false
      }
      nl = this.lineScratch.indexOf(10)
      if (nl < 0 || nl >= n) return false
      buf = this.lineScratch
      start = 0
    }
    if (nl - start < 68 || !sameKey(buf, start, this.scratch)) return false
    if (!parseLine(buf, start, nl, "checked")) return false
    this.foundSegment = segment
    this.foundOffset = parsed.offset
    this.foundLength = parsed.length
    return true
  }

  private segmentAt(position: number): number {
    const segments = this.segments
    let lo = 0
    let hi = segments.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1
      if (segments[mid]!.base <= position) lo = mid
      else hi = mid - 1
    }
    return lo
  }

  private block(segment: number, blockNumber: number): Block | undefined {
    const id = segment * 2 ** 28 + blockNumber
    if (id === this.lastBlockId && this.lastBlock !== undefined) return this.lastBlock
    const cached = this.blocks.get(id)
    if (cached !== undefined) {
      this.blocks.delete(id)
      this.blocks.set(id, cached)
      this.lastBlockId = id
      this.lastBlock = cached
      return cached
    }
    const fd = this.fd(segment, true)
    if (fd < 0) return undefined
    let block: Block
    if (this.blocks.size >= MAX_BLOCKS) {
      const [oldest, old] = this.blocks.entries().next().value!
      this.blocks.delete(oldest)
      if (oldest === this.lastBlockId) this.lastBlock = undefined
      block = old
    } else {
      block = { buf: Buffer.allocUnsafe(BLOCK), valid: 0 }
    }
    try {
      let got = 0
      for (;;) {
        const n = fs.readSync(fd, block.buf, got, BLOCK - got, blockNumber * BLOCK + got)
        if (n === 0) break
        got += n
        if (got === BLOCK) break
      }
      block.valid = got
    } catch {
      return undefined
    }
    this.blocks.set(id, block)
    this.lastBlockId = id
    this.lastBlock = block
    return block
  }

  private forgetBlocks(): void {
    this.blocks.clear()
    this.lastBlockId = -1
    this.lastBlock = undefined
  }

  private read(key: string): string | undefined {
    const buffered = this.pending.get(key) ?? this.inflight.get(key)
    if (buffered !== undefined) return buffered
    if (!this.locate(key)) return undefined
    const fd = this.fd(this.foundSegment, false)
    if (fd < 0) return undefined
    const offset = this.foundOffset
    const length = this.foundLength
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

  private fd(segment: number, idx: boolean): number {
    const id = segment * 2 + (idx ? 1 : 0)
    const open = this.fds.get(id)
    if (open !== undefined) {
      this.fds.delete(id)
      this.fds.set(id, open)
      return open
    }
    let fd: number
    try {
      const s = this.segments[segment]!
      fd = fs.openSync(idx ? s.idxPath : s.dataPath, "r")
    } catch {
      fd = -1
    }
    this.fds.set(id, fd)
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
    if (this.pending.has(key) || this.inflight.has(key) || this.locate(key)) return false
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
      const idxBytes = Buffer.from(lines, "latin1")
      await writeAll(writer.idx, idxBytes, writer.idxSize, writer.idxPath)
      await sync(writer.idx, writer.idxPath)
      // Committed: positions advance only now, so a failed flush is retried over the same
      // bytes and never leaves a gap or a torn line in the middle of a file.
      const base = this.segments[writer.segment]!.base + writer.idxSize
      writer.dataSize = at
      writer.idxSize += idxBytes.length
      // Blocks read back before this flush may hold the bytes of a failed attempt.
      this.forgetBlocks()
      let line = 0
      for (let i = 0; i < keys.length; i++) {
        hexFromString(keys[i]!, this.scratch)
        this.index.add(this.scratch[0]!, base + line)
        line += 64 + 1 + String(offsets[i]).length + 1 + String(lengths[i]).length + 1
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
    // The last segment: its index grows past every other's position.
    const segment = this.addSegment(dataPath, idxPath, 0)
    return { segment, dataPath, idxPath, data, idx, dataSize: 0, idxSize: 0 }
  }

  async close(): Promise<void> {
    this.closed = true
    for (const fd of this.fds.values()) if (fd >= 0) closeQuietly(fd)
    this.fds.clear()
    this.forgetBlocks()
    const writer = this.writer
    this.writer = undefined
    if (writer !== undefined) {
      await writer.data.close().catch(() => undefined)
      await writer.idx.close().catch(() => undefined)
    }
  }
}

/** The newlines in the first `size` bytes of `file`, read in pieces through `chunk`. */
const countLines = (file: string, size: number, chunk: Buffer): number => {
  let lines = 0
  scanFile(file, size, chunk, (buf, from, end) => {
    for (let at = buf.indexOf(10, from); at >= 0 && at < end; at = buf.indexOf(10, at + 1)) lines++
    return end
  })
  return lines
}

/**
 * Reads the first `size` bytes of `file` in pieces through `chunk`. `each` gets the bytes
 * `from`–`end` of the chunk (what it left unconsumed of the last piece first; `start` is the
 * file position of `chunk[0]`) and returns how far it consumed them. A missing file reads as
 * empty.
 */
const scanFile = (
  file: string,
  size: number,
  chunk: Buffer,
  each: (buf: Buffer, from: number, end: number, start: number) => number
): void => {
  let fd: number
  try {
    fd = fs.openSync(file, "r")
  } catch (e) {
    if (code(e) === "ENOENT") return
    throw new CacheError({ path: file, description: describe(e) })
  }
  try {
    let read = 0
    let kept = 0
    let skipping = false
    while (read < size) {
      const n = fs.readSync(fd, chunk, kept, Math.min(chunk.length - kept, size - read), read)
      if (n === 0) break
      const start = read - kept
      read += n
      const end = kept + n
      let from = 0
      if (skipping) {
        // The rest of a line longer than a piece (not one the cache wrote): skip it.
        const nl = chunk.indexOf(10)
        if (nl < 0 || nl >= end) {
          kept = 0
          continue
        }
        from = nl + 1
        skipping = false
      }
      const consumed = each(chunk, from, end, start)
      kept = end - consumed
      if (kept === chunk.length) {
        kept = 0
        skipping = true
      } else if (kept > 0) chunk.copy(chunk, 0, consumed, end)
    }
  } catch (e) {
    throw new CacheError({ path: file, description: describe(e) })
  } finally {
    closeQuietly(fd)
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

/** The first newline of `buf` from `from` within a line's length and before `end`, or -1. */
const newlineIn = (buf: Buffer, from: number, end: number): number => {
  const stop = Math.min(end, from + MAX_LINE)
  for (let i = from; i < stop; i++) if (buf[i] === 10) return i
  return -1
}

/** Whether the 64 bytes of `buf` at `at` are the lowercase hex of the key `words`. */
const sameKey = (buf: Buffer, at: number, words: Uint32Array): boolean => {
  for (let i = 0; i < 8; i++) {
    let word = 0
    for (let j = 0; j < 8; j++) {
      const d = hexDigit(buf[at + i * 8 + j]!)
      if (d < 0) return false
      word = (word << 4) | d
    }
    if (word >>> 0 !== words[i]) return false
  }
  return true
}

/** Where the last line `parseLine` accepted puts its answer. */
const parsed = { offset: 0, length: 0 }

/**
 * Whether `buf[line, nl)` is a well-formed index line `<64 hex> <offset> <length>`; if so its
 * numbers are in `parsed` and the key's words in `words` (`"checked"`: the key was compared
 * already, with `sameKey`).
 */
const parseLine = (buf: Buffer, line: number, nl: number, words: Uint32Array | "checked"): boolean => {
  if (nl - line < 68 || buf[line + 64] !== 32) return false
  for (let i = 0; i < 8 && words !== "checked"; i++) {
    let word = 0
    for (let j = 0; j < 8; j++) {
      const d = hexDigit(buf[line + i * 8 + j]!)
      if (d < 0) return false
      word = (word << 4) | d
    }
    words[i] = word >>> 0
  }
  let i = line + 65
  let offset = 0
  let digits = 0
  for (; i < nl && buf[i] !== 32; i++, digits++) {
    const d = buf[i]! - 48
    if (d < 0 || d > 9) break
    offset = offset * 10 + d
  }
  if (digits === 0 || digits > 15 || buf[i] !== 32) return false
  i++
  let length = 0
  digits = 0
  for (; i < nl; i++, digits++) {
    const d = buf[i]! - 48
    if (d < 0 || d > 9) break
    length = length * 10 + d
  }
  if (digits === 0 || digits > 10 || i !== nl || length < 2 || length > 0xffffffff) return false
  parsed.offset = offset
  parsed.length = length
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
