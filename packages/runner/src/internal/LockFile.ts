/**
 * An exclusive lock file on a plain file system, taken over when its owner is gone — with
 * node:fs alone (no Effect here: the race test runs it in many small processes).
 *
 * **The record.** The lock file holds one JSON line naming its owner: pid, host name, a random
 * token, the boot it runs in and its start time (Linux: `/proc/sys/kernel/random/boot_id` and
 * field 22 of `/proc/<pid>/stat`; null elsewhere), and when it took the lock. Its bytes are
 * unique (the token), so "the lock is still the record I read" is a comparison of bytes.
 *
 * **Taking a free lock.** The record is written to a file of our own (`<lock>.<pid>-<token>.tmp`,
 * fsynced) and hard-linked to the lock's name. `link` fails if the name exists, so exactly one
 * racer wins, and the lock is never seen empty or half written: it appears whole.
 *
 * **Judging a lock.** A record whose host is another is never judged (its pid means nothing
 * here): it is refused unless the caller breaks it explicitly (`breakLock`), as is a lock that
 * is not a record at all. The one exception is a record a step of a distributed run wrote
 * (marked `cluster`: its run and database): a caller that holds that run's lock in that
 * database (`Options.cluster`, see ClusterRunLock.ts) knows the writer's database session has
 * ended, and takes such a record over as stale. A record of this host is stale when its boot is not this one (a
 * reboot ended it), when no process has its pid, or when the process with its pid started at
 * another time than the record says (the pid was reused). Otherwise its owner runs: refused.
 * (A pid-only lock of an older sluice is judged by its pid.)
 *
 * **Taking over a stale lock.** A stale record S must be replaced by exactly one racer, and
 * only while the lock still is S. Each racer that judged S stale tries to create a claim on it,
 * `<lock>.claim-<hash of S>.<n>`, by linking its own record there, n = 1, 2, …: link makes
 * each claim name have one creator. A racer moves to claim n + 1 only after judging the
 * claimant of claim n stale (it died mid-takeover); on a live claimant it refuses, naming it.
 * So at any time at most one live process holds a claim on S that no live process holds an
 * earlier one of. That claimant re-reads the lock: if it is still S, it renames its own record
 * over it. Between the re-read and the rename nobody else can change the lock:
 *   - S's owner is gone (that is why S was judged stale);
 *   - every other racer that judged S stale stopped at a live claim;
 *   - a racer taking the lock fresh fails to link, since the lock exists: `rename` replaces it
 *     in one step, so its name is never free during a takeover;
 *   - claims on any other record are moot: S is on the lock, and a record never comes back
 *     (its token), so their claimants' re-reads fail and they start over.
 * If the re-read shows another record, the claim is moot: it is removed and the racer starts
 * over (someone else took over, or released, in between). The holder removes leftover claims
 * (a claim on a record that is no longer on the lock can only ever be moot).
 *
 * **Releasing.** Only a lock that still holds our record is removed: read, compare, unlink.
 * Between the compare and the unlink the lock could only change if someone took it over,
 * which needs our record judged stale — impossible while we run on this host — or broken with
 * `breakLock` from another host while we still run, which that user asserted we did not.
 */
import { createHash, randomBytes } from "node:crypto"
import { closeSync, fsyncSync, linkSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs"
import { hostname } from "node:os"
import { basename, dirname, join } from "node:path"
import { fileMode } from "./privateMode.js"

/** Who holds a lock. */
export interface Owner {
  readonly pid: number
  readonly host: string
  readonly token: string
  /** The boot the owner runs in (Linux), null where unknown. */
  readonly boot: string | null
  /** The owner's start time in clock ticks since boot (Linux), null where unknown. */
  readonly start: string | null
  /** When it took the lock (ISO time); null for a lock of an older sluice. */
  readonly at: string | null
  /** Set when a step of a distributed run holds it, holding the run's lock in the cluster's database. */
  readonly cluster?: ClusterMark
}

/** What a distributed run's step writes in its lock records: the run, and the database holding its lock. */
export interface ClusterMark {
  readonly run: string
  /** The database's identity (its system identifier and name), not its address. */
  readonly database: string
}

/** A lock we hold: its path and the exact bytes of our record. */
export interface Held {
  readonly path: string
  readonly record: string
  readonly owner: Owner
}

/** Why a lock cannot be taken. */
export type Refusal =
  /** Its owner runs on this host. */
  | { readonly reason: "running"; readonly owner: Owner }
  /** Its owner is on another host: nothing here can tell whether it still runs. */
  | { readonly reason: "other-host"; readonly owner: Owner }
  /** The lock file holds no record sluice wrote. */
  | { readonly reason: "unreadable"; readonly text: string }

export type Outcome =
  /**
   * `broke`: the owner that was not judged gone on its own but taken over all the same, by
   * `breakLock`, or (`via: "cluster"`) as a step of a distributed run whose session ended.
   */
  | { readonly _tag: "Held"; readonly held: Held; readonly broke?: Refusal; readonly via?: "break-lock" | "cluster" }
  | { readonly _tag: "Refused"; readonly refusal: Refusal }

export interface Options {
  /** Take over a lock of another host, or one that holds no record (never a live owner's on this host). */
  readonly breakLock?: boolean
  /**
   * The caller is a step of a distributed run holding the run's lock in this database: its
   * record carries the mark, and a record of another host with the same mark is stale (its
   * writer held that database lock, which the caller could not hold while the writer's session
   * lived). Records without it (any other sluice, or one of an older version) are judged as usual.
   */
  readonly cluster?: ClusterMark
}

/** Rounds of the acquire loop before giving up: each round means another process got ahead. */
const MAX_ROUNDS = 1000

const readText = (path: string): string | undefined => {
  try {
    return readFileSync(path, "utf8")
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined
    throw e
  }
}

/** The boot id of this machine (Linux), read once. */
let bootId: string | null | undefined
const thisBoot = (): string | null => {
  if (bootId === undefined) bootId = readText("/proc/sys/kernel/random/boot_id")?.trim() || null
  return bootId
}

/** A process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), null where unknown. */
export const startTime = (pid: number): string | null => {
  let stat: string | undefined
  try {
    stat = readText(`/proc/${pid}/stat`)
  } catch {
    return null
  }
  if (stat === undefined) return null
  // Field 2 (the command) is in parentheses and may hold spaces and parentheses itself.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  const start = fields[22 - 3]
  return start !== undefined && /^\d+$/.test(start) ? start : null
}

const exists = (pid: number): boolean => {
  if (pid === process.pid) return true
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** A new record for this process (marked when it is a distributed run's step). */
export const me = (cluster?: ClusterMark): Owner => ({
  pid: process.pid,
  host: hostname(),
  token: randomBytes(16).toString("hex"),
  boot: thisBoot(),
  start: startTime(process.pid),
  at: new Date().toISOString(),
  ...(cluster === undefined ? {} : { cluster: { run: cluster.run, database: cluster.database } })
})

const clusterMarkOf = (u: unknown): ClusterMark | undefined => {
  if (typeof u !== "object" || u === null) return undefined
  const o = u as Record<string, unknown>
  return typeof o["run"] === "string" && typeof o["database"] === "string" ? { run: o["run"], database: o["database"] } : undefined
}

/** Whether two marks name the same run in the same database. */
export const sameMark = (a: ClusterMark | undefined, b: ClusterMark | undefined): boolean =>
  a !== undefined && b !== undefined && a.run === b.run && a.database === b.database

const str = (u: unknown): string | null => (typeof u === "string" ? u : null)

/** The owner a lock file names; undefined when it names none. */
export const parse = (text: string): Owner | undefined => {
  const trimmed = text.trim()
  // An older sluice wrote its pid alone.
  if (/^[1-9]\d*$/.test(trimmed)) return { pid: Number(trimmed), host: hostname(), token: "", boot: null, start: null, at: null }
  let json: unknown
  try {
    json = JSON.parse(trimmed)
  } catch {
    return undefined
  }
  if (typeof json !== "object" || json === null) return undefined
  const o = json as Record<string, unknown>
  if (typeof o["pid"] !== "number" || !Number.isInteger(o["pid"]) || o["pid"] <= 0) return undefined
  if (typeof o["host"] !== "string" || typeof o["token"] !== "string") return undefined
  const cluster = clusterMarkOf(o["cluster"])
  return { pid: o["pid"], host: o["host"], token: o["token"], boot: str(o["boot"]), start: str(o["start"]), at: str(o["at"]), ...(cluster === undefined ? {} : { cluster }) }
}

/** Whether a record's owner is gone ("stale"), or why it must be left alone. */
export const judge = (text: string, options: Options = {}): "stale" | Refusal => {
  const owner = parse(text)
  if (owner === undefined) return options.breakLock === true ? "stale" : { reason: "unreadable", text: text.slice(0, 200) }
  if (owner.host !== hostname()) {
    return options.breakLock === true || sameMark(owner.cluster, options.cluster) ? "stale" : { reason: "other-host", owner }
  }
  const boot = thisBoot()
  if (owner.boot !== null && boot !== null && owner.boot !== boot) return "stale"
  if (!exists(owner.pid)) return "stale"
  const start = startTime(owner.pid)
  if (owner.start !== null && start !== null && owner.start !== start) return "stale"
  return { reason: "running", owner }
}

/** link(2): false when `to` exists. */
const tryLink = (from: string, to: string): boolean => {
  try {
    linkSync(from, to)
    return true
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === "EEXIST") return false
    if (code === "EPERM" || code === "ENOTSUP" || code === "EOPNOTSUPP") {
      throw new Error(`${code}: the file system has no hard links; the run lock needs them (keep run directories on a file system with hard links)`)
    }
    throw e
  }
}

const unlinkQuietly = (path: string): void => {
  try {
    unlinkSync(path)
  } catch {
    // gone already
  }
}

const claimPrefix = (lock: string): string => `${basename(lock)}.claim-`

/** The n-th claim on the record `text` of the lock at `lock`. */
export const claimPath = (lock: string, text: string, n: number): string =>
  join(dirname(lock), `${claimPrefix(lock)}${createHash("sha256").update(text).digest("hex").slice(0, 32)}.${n}`)

/** Creates a claim on the stale record `text`: its path, or why not (a live process is claiming it). */
const claim = (lock: string, text: string, own: string, options: Options): { readonly path: string } | Refusal => {
  let n = 1
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const path = claimPath(lock, text, n)
    if (tryLink(own, path)) return { path }
    const claimant = readText(path)
    // Removed meanwhile by a new holder's clean-up: the same number again (it is moot now).
    if (claimant === undefined) continue
    const verdict = judge(claimant, options)
    if (verdict !== "stale") return verdict
    n++
  }
  throw new Error(`${lock}: gave up claiming a stale lock after ${MAX_ROUNDS} tries`)
}

/** Removes every claim file next to the lock: once we hold it, all of them are moot. */
const removeClaims = (lock: string): void => {
  const prefix = claimPrefix(lock)
  for (const name of readdirSync(dirname(lock))) {
    if (name.startsWith(prefix)) unlinkQuietly(join(dirname(lock), name))
  }
}

/** Writes `text` to a new private file and fsyncs it (it is linked as the lock after). */
const writeNew = (path: string, text: string): void => {
  const fd = openSync(path, "wx", fileMode)
  try {
    writeSync(fd, text)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

/** Takes the lock at `path`, or says who holds it. Throws on I/O errors (a directory we cannot write). */
export const acquire = (path: string, options: Options = {}): Outcome => {
  const owner = me(options.cluster)
  const record = JSON.stringify(owner) + "\n"
  const own = `${path}.${owner.pid}-${owner.token}.tmp`
  writeNew(own, record)
  const held = { path, record, owner }
  try {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      if (tryLink(own, path)) {
        removeClaims(path)
        return { _tag: "Held", held }
      }
      const current = readText(path)
      if (current === undefined) continue // released meanwhile
      const verdict = judge(current, options)
      if (verdict !== "stale") return { _tag: "Refused", refusal: verdict }
      const claimed = claim(path, current, own, options)
      if (!("path" in claimed)) return { _tag: "Refused", refusal: claimed }
      if (readText(path) !== current) {
        unlinkQuietly(claimed.path)
        continue
      }
      renameSync(own, path)
      removeClaims(path)
      // Gone on its own, or taken over on the caller's word (breakLock) or the cluster's (its mark).
      const plain = judge(current)
      if (plain === "stale") return { _tag: "Held", held }
      const cluster = options.cluster !== undefined && judge(current, { cluster: options.cluster }) === "stale"
      return { _tag: "Held", held, broke: plain, via: cluster ? "cluster" : "break-lock" }
    }
    throw new Error(`${path}: gave up taking the lock after ${MAX_ROUNDS} rounds of other processes taking and releasing it`)
  } finally {
    unlinkQuietly(own)
  }
}

/** Removes the lock if it still holds our record; false when it does not (it was taken over). */
export const release = (held: Held): boolean => {
  if (readText(held.path) !== held.record) return false
  unlinkSync(held.path)
  return true
}
