/**
 * A FileSystem that tells what it changes under one directory (a cluster run's local copy:
 * RunFiles.ts), so that a flush pushes only what changed. What it records is a hint for the
 * cost, never the whole truth: a flush also compares every file's stat with the one it last
 * pushed, and a file changed without a record (a module writing with node:fs) is pushed whole.
 *
 * Recorded per file (its path relative to the directory):
 *   - `cut`: the lowest length it was truncated to (`w` opens and whole writes: 0, and a rename
 *     onto it) — the bytes from there on are new;
 *   - `wrote`: the lowest offset written at by a handle that writes where it stands (`r+`), not
 *     at the end (`a`, `a+`: those only add after the file's bytes, which the stat shows).
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { Effect } from "effect"
import { isAbsolute, relative, resolve, sep } from "node:path"

export interface Change {
  cut?: number
  wrote?: number
}

export interface Recorder {
  /** The changes recorded since the last `take` (and a fresh record from now on). */
  readonly take: () => ReadonlyMap<string, Change>
  readonly cut: (file: string, length: number) => void
  readonly wrote: (file: string, at: number) => void
  /** Written at its end (an `a` handle): the bytes after what the flush last pushed are new. */
  readonly appended: (file: string) => void
  /** Changes taken by a flush that failed, recorded again. */
  readonly restore: (changes: ReadonlyMap<string, Change>) => void
}

export const recorder = (): Recorder => {
  let changes = new Map<string, Change>()
  const entry = (file: string): Change => {
    let c = changes.get(file)
    if (c === undefined) changes.set(file, (c = {}))
    return c
  }
  return {
    take: () => {
      const taken = changes
      changes = new Map()
      return taken
    },
    cut: (file, length) => {
      const c = entry(file)
      c.cut = Math.min(c.cut ?? Infinity, length)
    },
    wrote: (file, at) => {
      const c = entry(file)
      c.wrote = Math.min(c.wrote ?? Infinity, at)
    },
    appended: (file) => void entry(file),
    restore: (taken) => {
      for (const [file, c] of taken) {
        const e = entry(file)
        if (c.cut !== undefined) e.cut = Math.min(e.cut ?? Infinity, c.cut)
        if (c.wrote !== undefined) e.wrote = Math.min(e.wrote ?? Infinity, c.wrote)
      }
    }
  }
}

/** `path` relative to `root`, when it is under it. */
export const under = (root: string, path: string): string | undefined => {
  const rel = relative(root, resolve(path))
  return rel === "" || rel.startsWith(`..${sep}`) || rel === ".." || isAbsolute(rel) ? undefined : rel.split(sep).join("/")
}

const truncating = new Set<FileSystem.OpenFlag>(["w", "w+", "wx", "wx+"])
const appending = new Set<FileSystem.OpenFlag>(["a", "a+", "ax", "ax+"])

/** A handle that records its truncations and, when it writes where it stands, its writes. */
const watchFile = (file: FileSystem.File, rel: string, record: Recorder, append: boolean): FileSystem.File => {
  let position = 0
  const advance = (n: number) => void (position += n)
  return {
    [FileSystem.FileTypeId]: FileSystem.FileTypeId,
    fd: file.fd,
    get stat() {
      return file.stat
    },
    get sync() {
      return file.sync
    },
    seek: (offset, from) =>
      Effect.tap(file.seek(offset, from), () => void (position = from === "start" ? Number(offset) : position + Number(offset))),
    read: (buffer) => Effect.tap(file.read(buffer), (n) => advance(Number(n))),
    readAlloc: (size) => Effect.tap(file.readAlloc(size), (o) => advance(o._tag === "Some" ? o.value.length : 0)),
    truncate: (length) =>
      Effect.tap(file.truncate(length), () => {
        const n = Number(length ?? 0)
        record.cut(rel, n)
        if (position > n) position = n
      }),
    write: (buffer) =>
      Effect.suspend(() => {
        if (append) record.appended(rel)
        else record.wrote(rel, position)
        return Effect.tap(file.write(buffer), (n) => (append ? undefined : advance(Number(n))))
      }),
    writeAll: (buffer) =>
      Effect.suspend(() => {
        if (append) record.appended(rel)
        else record.wrote(rel, position)
        return Effect.tap(file.writeAll(buffer), () => (append ? undefined : advance(buffer.length)))
      })
  }
}

/** `fs`, recording what it changes under `root` in `record`. */
export const watch = (fs: FileSystem.FileSystem, root: string, record: Recorder): FileSystem.FileSystem => {
  const cutAll = (path: string) => {
    const rel = under(root, path)
    if (rel !== undefined) record.cut(rel, 0)
  }
  return FileSystem.make({
    ...fs,
    open: (path, options) =>
      Effect.gen(function* () {
        const flag = options?.flag ?? "r"
        const rel = under(root, path)
        const file = yield* fs.open(path, options)
        if (rel === undefined || flag === "r") return file
        if (truncating.has(flag)) record.cut(rel, 0)
        return watchFile(file, rel, record, appending.has(flag))
      }),
    writeFile: (path, data, options) => Effect.tap(fs.writeFile(path, data, options), () => cutAll(path)),
    truncate: (path, length) =>
      Effect.tap(fs.truncate(path, length), () => {
        const rel = under(root, path)
        if (rel !== undefined) record.cut(rel, Number(length ?? 0))
      }),
    rename: (from, to) => Effect.tap(fs.rename(from, to), () => cutAll(to)),
    copyFile: (from, to) => Effect.tap(fs.copyFile(from, to), () => cutAll(to))
  })
}
