/**
 * Runs one script file (the bundled status program, dist/status.bundle.cjs) with a V8 code
 * cache: V8 compiles ~1.7 MB of JavaScript in ~100 ms on Node 20, and reads the compiled code
 * back in a fraction of that. Node 20 has no compile cache for ES modules
 * (module.enableCompileCache came in 22), so the bundle is a script (`vm.Script`) and the cache
 * is its `cachedData`.
 *
 * Where: a file named for the script's content and the Node version and architecture, in the
 * first of these directories it can be read from or written to — next to the script (the
 * package's own dist/), else `<OS temp dir>/sluice-code-cache-<uid>` (0700) for a package
 * directory the user cannot write; `$SLUICE_CODE_CACHE_DIR` instead of both, and
 * `SLUICE_CODE_CACHE=off` for none. A directory of another user, or one other users can write,
 * is neither read nor written (V8 runs what a cache holds).
 *
 * When: after the program has run (at exit), so that the functions it compiled as it ran are in
 * the cache too — when there was no cache, or V8 rejected it (another V8 or other flags), and the
 * program succeeded (a run that failed early compiled little of what the next one runs). A
 * cache is written whole under another name and renamed into place: a reader sees all of it or
 * none. It carries the SHA-256 of its bytes, checked before V8 sees them. Nothing here ever
 * fails the program: without a cache it compiles, as it would without this module.
 *
 * Plain Node only: it runs before any Effect module loads.
 */
import { createHash, randomBytes } from "node:crypto"
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { basename, dirname, join } from "node:path"
import { pathToFileURL } from "node:url"
import * as vm from "node:vm"
import { directoryMode, fileMode, isOwnDirectory } from "./privateMode.js"

const magic = "sluice-v8-code-cache 1\n"

const sha256 = (data: string | Uint8Array): string => createHash("sha256").update(data).digest("hex")

/** The directories a cache of `script` is looked for and written in, in order. */
export const cacheDirs = (script: string, env: NodeJS.ProcessEnv = process.env): ReadonlyArray<string> => {
  if (env["SLUICE_CODE_CACHE"] === "off") return []
  const dir = env["SLUICE_CODE_CACHE_DIR"]?.trim()
  if (dir !== undefined && dir !== "") return [dir]
  const uid = process.getuid?.()
  return [dirname(script), join(tmpdir(), uid === undefined ? "sluice-code-cache" : `sluice-code-cache-${uid}`)]
}

/** The cache's file name for this script text under this Node (other Nodes keep their own). */
export const cacheName = (script: string, source: string): string =>
  `${basename(script)}.${process.version}-${process.arch}.${sha256(source).slice(0, 16)}.v8cache`

/** What the names of this Node's caches of any version of the same script start with. */
const sameScript = (name: string): string => name.replace(/[0-9a-f]{16}\.v8cache$/, "")

/** The cached data in `file` when it is whole (its checksum holds); undefined otherwise. */
export const readCache = (file: string): Buffer | undefined => {
  if (!isOwnDirectory(dirname(file))) return undefined
  let bytes: Buffer
  try {
    bytes = readFileSync(file)
  } catch {
    return undefined
  }
  const headerEnd = magic.length + 65
  if (bytes.length <= headerEnd || bytes.subarray(0, magic.length).toString("latin1") !== magic) return undefined
  const data = bytes.subarray(headerEnd)
  return bytes.subarray(magic.length, headerEnd - 1).toString("latin1") === sha256(data) ? data : undefined
}

/**
 * Writes `data` as `name` in the first directory that takes it (created 0700 if missing), and
 * removes this Node's caches of the script's earlier versions there. Returns the file, or
 * undefined where no directory took it.
 */
export const writeCache = (dirs: ReadonlyArray<string>, name: string, data: Uint8Array): string | undefined => {
  for (const dir of dirs) {
    try {
      mkdirSync(dir, { recursive: true, mode: directoryMode })
      if (!isOwnDirectory(dir)) continue
      const file = join(dir, name)
      const temp = `${file}.${randomBytes(6).toString("hex")}.tmp`
      writeFileSync(temp, Buffer.concat([Buffer.from(`${magic}${sha256(data)}\n`, "latin1"), data]), { mode: fileMode })
      try {
        renameSync(temp, file)
      } catch (e) {
        rmSync(temp, { force: true })
        throw e
      }
      const prefix = sameScript(name)
      for (const other of readdirSync(dir)) {
        if (other !== name && other.startsWith(prefix) && other.endsWith(".v8cache")) rmSync(join(dir, other), { force: true })
      }
      return file
    } catch {
      // Not writable here (a read-only installation, a full disk …): the next directory, or none.
    }
  }
  return undefined
}

/**
 * Runs `script`, a file holding one function expression
 * `(function (require, module, exports, __filename, __dirname, __sluiceScriptUrl) { … })`
 * (what scripts/bundle-status.mjs writes), with its code cache.
 */
export const runScript = (script: string, env: NodeJS.ProcessEnv = process.env): void => {
  const source = readFileSync(script, "utf8")
  const dirs = cacheDirs(script, env)
  const name = cacheName(script, source)
  let cachedData: Buffer | undefined
  for (const dir of dirs) {
    cachedData = readCache(join(dir, name))
    if (cachedData !== undefined) break
  }
  const compiled = new vm.Script(source, { filename: script, ...(cachedData === undefined ? {} : { cachedData }) })
  if (dirs.length > 0 && (cachedData === undefined || compiled.cachedDataRejected === true)) {
    process.once("exit", (code) => {
      if (code !== 0) return
      try {
        writeCache(dirs, name, compiled.createCachedData())
      } catch {
        // A cache is an optimisation: the program's own exit stands.
      }
    })
  }
  const run = compiled.runInThisContext() as (
    require: NodeJS.Require,
    module: { exports: unknown },
    exports: unknown,
    filename: string,
    dirname: string,
    url: string
  ) => void
  const module = { exports: {} }
  run(createRequire(script), module, module.exports, script, dirname(script), pathToFileURL(script).href)
}
