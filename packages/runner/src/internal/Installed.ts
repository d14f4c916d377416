/**
 * Installed packages as Node finds them, and the npm version ranges sluice's package.json
 * uses. Plain Node only: `bin/sluice.js` needs this before any Effect code is loaded.
 */
import { existsSync, readFileSync, realpathSync } from "node:fs"
import { dirname, join, resolve, sep } from "node:path"
import { fileURLToPath } from "node:url"

export interface Manifest {
  readonly name: string
  readonly version: string
  readonly peerDependencies?: Readonly<Record<string, string>>
}

export interface Installed {
  readonly name: string
  readonly version: string
  /** The package's directory, symlinks resolved: two finds are one copy only if these match. */
  readonly dir: string
}

export const readManifest = (file: string): Manifest => JSON.parse(readFileSync(file, "utf8")) as Manifest

/** @sluice/runner's own package.json. */
export const runner: Manifest = readManifest(fileURLToPath(new URL("../../package.json", import.meta.url)))

/**
 * The copy of `name` that `import "name"` from a module in `fromDir` loads: Node's lookup through
 * each ancestor's node_modules (the same for ESM and CommonJS, whatever `exports` says).
 */
export const locate = (name: string, fromDir: string): Installed | undefined => {
  for (let dir = resolve(fromDir); ; dir = dirname(dir)) {
    const file = join(dir, "node_modules", name, "package.json")
    if (existsSync(file)) {
      try {
        return { name, version: readManifest(file).version, dir: realpathSync(dirname(file)) }
      } catch {
        return { name, version: "unknown", dir: dirname(file) }
      }
    }
    if (dirname(dir) === dir) return undefined
  }
}

/** The project a path inside node_modules belongs to: `/app/node_modules/effect` → `/app`. */
export const projectOf = (dir: string): string | undefined => {
  const i = dir.lastIndexOf(`${sep}node_modules${sep}`)
  return i < 0 ? undefined : dir.slice(0, i)
}

const parse = (version: string): [number, number, number] | undefined => {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(version)
  return m === null ? undefined : [Number(m[1]), Number(m[2]), Number(m[3])]
}

/**
 * Whether `version` is in `range`, for the forms sluice's package.json uses (`^x.y.z`, `~x.y.z`);
 * other forms are not judged (true). Pre-releases are outside every range.
 */
export const satisfies = (version: string, range: string): boolean => {
  const m = /^([\^~])(\d+\.\d+\.\d+)$/.exec(range.trim())
  if (m === null) return true
  const v = parse(version)
  const low = parse(m[2]!)!
  if (v === undefined) return false
  const cmp = v[0] - low[0] || v[1] - low[1] || v[2] - low[2]
  if (cmp < 0) return false
  // ~, and ^ below 1.0: same major and minor. ^ from 1.0: same major.
  if (m[1] === "~" || low[0] === 0) return v[0] === low[0] && v[1] === low[1]
  return v[0] === low[0]
}

/** What to type to get a version in `range`: `effect@3`, `@effect/cli@0.77`. */
export const installSpec = (name: string, range: string): string => {
  const low = parse(range.replace(/^[\^~]/, ""))
  return low === undefined ? `${name}@"${range}"` : `${name}@${low[0] === 0 ? `0.${low[1]}` : low[0]}`
}
