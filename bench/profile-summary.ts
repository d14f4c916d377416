/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time by function and by
 * package/file, highest first.
 *
 *   tsx bench/profile-summary.ts <file.cpuprofile> [--top 30]
 */
import { readFileSync } from "node:fs"

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
  readonly columnNumber: number
}
interface ProfileNode {
  readonly id: number
  readonly callFrame: CallFrame
  readonly children?: ReadonlyArray<number>
}
interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly startTime: number
  readonly endTime: number
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

export interface Row {
  readonly name: string
  readonly ms: number
  readonly pct: number
}

export interface ProfileSummary {
  readonly totalMs: number
  readonly functions: ReadonlyArray<Row>
  /** Time with the function on the stack (counted once per sample), sluice's own code only. */
  readonly inclusive: ReadonlyArray<Row>
  readonly groups: ReadonlyArray<Row>
  readonly files: ReadonlyArray<Row>
}

const shortUrl = (url: string): string => {
  if (url === "") return ""
  const u = url.replace(/^file:\/\//, "")
  const nm = u.lastIndexOf("node_modules/")
  if (nm !== -1) return u.slice(nm + "node_modules/".length)
  const pk = u.indexOf("/packages/")
  if (pk !== -1) return u.slice(pk + 1)
  const b = u.indexOf("/bench/")
  if (b !== -1) return u.slice(b + 1)
  return u
}

/** What a frame belongs to: a package of node_modules, a sluice package, node itself, or V8. */
const group = (frame: CallFrame): string => {
  const url = frame.url
  if (url === "") {
    if (frame.functionName.startsWith("(")) return frame.functionName // (garbage collector), (idle), (program)
    return "(native / V8 builtins)"
  }
  if (url.startsWith("node:")) return "node: internals"
  const u = shortUrl(url)
  if (u.startsWith("packages/")) return u.split("/").slice(0, 2).join("/")
  if (u.startsWith("@")) return u.split("/").slice(0, 2).join("/")
  if (!u.startsWith("/")) return u.split("/")[0]!
  return u
}

export const summarise = (path: string, top = 30): ProfileSummary => {
  const profile = JSON.parse(readFileSync(path, "utf8")) as Profile
  const byId = new Map<number, ProfileNode>()
  for (const n of profile.nodes) byId.set(n.id, n)
  const self = new Map<number, number>()
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0))
  }
  const fn = new Map<string, number>()
  const grp = new Map<string, number>()
  const file = new Map<string, number>()
  const keyOf = (f: CallFrame) => `${f.functionName || "(anonymous)"}${f.url === "" ? "" : ` ${shortUrl(f.url)}:${f.lineNumber + 1}`}`
  // Inclusive time of sluice's functions: walk each sample's stack once.
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const incl = new Map<string, number>()
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0
    const seen = new Set<string>()
    for (let id: number | undefined = profile.samples[i]!; id !== undefined; id = parent.get(id)) {
      const f = byId.get(id)!.callFrame
      if (!shortUrl(f.url).startsWith("packages/")) continue
      const k = keyOf(f)
      if (seen.has(k)) continue
      seen.add(k)
      incl.set(k, (incl.get(k) ?? 0) + dt)
    }
  }
  let total = 0
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame
    total += us
    const where = f.url === "" ? "" : ` ${shortUrl(f.url)}:${f.lineNumber + 1}`
    const key = `${f.functionName || "(anonymous)"}${where}`
    fn.set(key, (fn.get(key) ?? 0) + us)
    const g = group(f)
    grp.set(g, (grp.get(g) ?? 0) + us)
    const fk = f.url === "" ? g : shortUrl(f.url)
    file.set(fk, (file.get(fk) ?? 0) + us)
  }
  const rows = (m: Map<string, number>, n: number): Array<Row> =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, us]) => ({ name, ms: us / 1000, pct: (100 * us) / total }))
  return { totalMs: total / 1000, functions: rows(fn, top), inclusive: rows(incl, top), groups: rows(grp, 20), files: rows(file, 25) }
}

export const render = (s: ProfileSummary): string => {
  const table = (title: string, rows: ReadonlyArray<Row>) =>
    [`${title}`, ...rows.map((r) => `  ${r.ms.toFixed(0).padStart(8)} ms ${r.pct.toFixed(1).padStart(5)}%  ${r.name}`)].join("\n")
  return [
    `profile: ${s.totalMs.toFixed(0)} ms sampled`,
    table("self time by group:", s.groups),
    table("self time by file:", s.files),
    table("self time by function:", s.functions),
    table("inclusive time of sluice's functions (on the stack, once per sample):", s.inclusive)
  ].join("\n\n")
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const path = process.argv[2]
  if (path === undefined) throw new Error("usage: profile-summary.ts <file.cpuprofile> [--top N]")
  const i = process.argv.indexOf("--top")
  console.log(render(summarise(path, i === -1 ? 30 : Number(process.argv[i + 1]))))
}
