/**
 * The run lock (internal/LockFile.ts): eight real processes race for one lock file, fifty
 * rounds, some starting from a lock its owner left behind (dead, from another boot, or its pid
 * reused) and one from a takeover that died halfway. In every round exactly one takes it and
 * the others are refused; the holders' shared log never shows two of them inside at once.
 * Then, in this process: what is refused, what `breakLock` takes, and what release leaves.
 */
import { type ChildProcess, fork, spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { hostname, tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as LockFile from "../src/internal/LockFile.js"

const here = dirname(fileURLToPath(import.meta.url))
const repoRoot = resolve(here, "..", "..", "..")
const racerScript = join(here, "fixtures", "lock-racer.ts")

const RACERS = 8
const ROUNDS = 50

/** Pids no process has: two that ran and ended (taken once: each costs a process). */
const dead = [spawnSync(process.execPath, ["-e", ""]).pid!, spawnSync(process.execPath, ["-e", ""]).pid!] as const

const bootId = existsSync("/proc/sys/kernel/random/boot_id") ? readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() : null

const record = (owner: Partial<LockFile.Owner>): string =>
  JSON.stringify({ pid: 1, host: hostname(), token: Math.random().toString(16).slice(2), boot: null, start: null, at: "2020-01-01T00:00:00.000Z", ...owner }) + "\n"

interface Reply {
  readonly type: string
  readonly id: string
  readonly held?: boolean
  readonly refusal?: string | null
  readonly released?: boolean | null
}

/** A forked racer and a way to wait for its next answer. */
interface Racer {
  readonly id: string
  readonly child: ChildProcess
  readonly next: () => Promise<Reply>
}

const startRacer = (lock: string, log: string, id: string): Racer => {
  const child = fork(racerScript, [lock, log, id], { cwd: repoRoot, execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] })
  const queue: Array<Reply> = []
  const waiting: Array<{ readonly res: (r: Reply) => void; readonly rej: (e: Error) => void }> = []
  child.on("message", (m: Reply) => {
    const w = waiting.shift()
    if (w !== undefined) w.res(m)
    else queue.push(m)
  })
  child.on("exit", (code) => {
    for (const w of waiting.splice(0)) w.rej(new Error(`racer ${id} exited (${code})`))
  })
  const next = () =>
    new Promise<Reply>((res, rej) => {
      const queued = queue.shift()
      if (queued !== undefined) return res(queued)
      waiting.push({ res, rej })
    })
  return { id, child, next }
}

/** What a round starts from: no lock, or one its owner left behind. */
const leftBehind = (round: number, lock: string): string => {
  const kind = round % 6
  switch (kind) {
    case 1:
      // Its owner ended.
      return record({ pid: dead[0] })
    case 2:
      // A live pid (this process), from another boot: a reboot ended its owner.
      return bootId === null ? record({ pid: dead[0] }) : record({ pid: process.pid, boot: "0-another-boot", start: LockFile.startTime(process.pid) })
    case 3:
      // A live pid (this process), started at another time: the pid was reused.
      return bootId === null ? record({ pid: dead[0] }) : record({ pid: process.pid, boot: bootId, start: "1" })
    case 4:
      // An older sluice's lock: the pid alone.
      return `${dead[0]}\n`
    case 5: {
      // A takeover that died halfway: its claim on the stale lock is left too.
      const stale = record({ pid: dead[0] })
      writeFileSync(LockFile.claimPath(lock, stale, 1), record({ pid: dead[1] }))
      return stale
    }
    default:
      return ""
  }
}

describe("LockFile: eight processes, fifty rounds", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-lock-race-"))
  const lock = join(dir, "run.lock")
  const log = join(dir, "holders.log")
  let racers: Array<Racer> = []

  beforeAll(async () => {
    writeFileSync(log, "")
    racers = Array.from({ length: RACERS }, (_, i) => startRacer(lock, log, `r${i}`))
    for (const r of await Promise.all(racers.map((r) => r.next()))) expect(r.type).toBe("ready")
  }, 120_000)

  afterAll(async () => {
    await Promise.all(
      racers.map(
        (r) =>
          new Promise<void>((res) => {
            if (r.child.exitCode !== null) return res()
            r.child.once("exit", () => res())
            r.child.send({ type: "exit" })
          })
      )
    )
    rmSync(dir, { recursive: true, force: true })
  })

  it("exactly one holder each round; the others are refused; the log never shows two inside", async () => {
    const holders: Array<string> = []
    for (let round = 0; round < ROUNDS; round++) {
      const before = leftBehind(round, lock)
      if (before !== "") writeFileSync(lock, before)
      for (const r of racers) r.child.send({ type: "try" })
      const tried = await Promise.all(racers.map((r) => r.next()))
      const won = tried.filter((t) => t.held === true)
      expect(won.map((t) => t.id), `round ${round} (${before.trim() || "no lock"})`).toHaveLength(1)
      expect(tried.filter((t) => t.held !== true).map((t) => t.refusal)).toEqual(Array(RACERS - 1).fill("running"))
      // The lock names the holder, whole; no claim or temp file is left beside it.
      const owner = LockFile.parse(readFileSync(lock, "utf8"))
      expect(owner?.pid).toBe(racers.find((r) => r.id === won[0]!.id)!.child.pid)
      expect(readdirSync(dir).sort()).toEqual(["holders.log", "run.lock"])
      holders.push(won[0]!.id)
      for (const r of racers) r.child.send({ type: "release" })
      const released = await Promise.all(racers.map((r) => r.next()))
      expect(released.filter((r) => r.released !== null).map((r) => [r.id, r.released])).toEqual([[won[0]!.id, true]])
      expect(existsSync(lock)).toBe(false)
    }
    // The shared log: every enter is followed by the same holder's exit before the next enter.
    const lines = readFileSync(log, "utf8").trim().split("\n")
    expect(lines).toHaveLength(2 * ROUNDS)
    let inside: string | null = null
    for (const [n, line] of lines.entries()) {
      const [what, id] = line.split(" ") as [string, string]
      if (what === "enter") {
        expect(inside, `line ${n + 1}: ${id} entered while ${inside} held the lock`).toBeNull()
        inside = id
      } else {
        expect(what).toBe("exit")
        expect(id, `line ${n + 1}`).toBe(inside)
        inside = null
      }
    }
    expect(lines.filter((l) => l.startsWith("enter ")).map((l) => l.slice(6))).toEqual(holders)
  }, 120_000)
})

describe("LockFile in one process", () => {
  const fresh = () => join(mkdtempSync(join(tmpdir(), "sluice-lock-")), "run.lock")

  it("a held lock is refused to the next taker, named with pid, host and time; released, it is free", () => {
    const lock = fresh()
    const first = LockFile.acquire(lock)
    expect(first._tag).toBe("Held")
    const text = readFileSync(lock, "utf8")
    expect(LockFile.parse(text)).toMatchObject({ pid: process.pid, host: hostname() })
    const second = LockFile.acquire(lock, { breakLock: true })
    // Even --break-lock leaves a live process of this host alone (this one, in another run).
    expect(second).toMatchObject({ _tag: "Refused", refusal: { reason: "running", owner: { pid: process.pid, host: hostname() } } })
    if (first._tag !== "Held") return
    expect(LockFile.release(first.held)).toBe(true)
    expect(existsSync(lock)).toBe(false)
    expect(LockFile.acquire(lock)._tag).toBe("Held")
  })

  it("a lock of another host is refused, and taken only with breakLock", () => {
    const lock = fresh()
    const foreign = record({ pid: 4242, host: "build-7.example.org" })
    writeFileSync(lock, foreign)
    expect(LockFile.acquire(lock)).toMatchObject({ _tag: "Refused", refusal: { reason: "other-host", owner: { pid: 4242, host: "build-7.example.org" } } })
    expect(readFileSync(lock, "utf8")).toBe(foreign)
    const taken = LockFile.acquire(lock, { breakLock: true })
    expect(taken).toMatchObject({ _tag: "Held", broke: { reason: "other-host", owner: { pid: 4242 } } })
    expect(LockFile.parse(readFileSync(lock, "utf8"))?.pid).toBe(process.pid)
  })

  it("a distributed run's step takes over a lock of another host marked with its run and database, and no other lock of another host", () => {
    const mark = { run: "spread-1a2b", database: "7716324288216644578/postgres" }
    const lock = fresh()
    // A record of an older sluice, or of a process outside the cluster: no mark, refused.
    const unmarked = record({ pid: 4242, host: "build-7.example.org" })
    writeFileSync(lock, unmarked)
    expect(LockFile.acquire(lock, { cluster: mark })).toMatchObject({ _tag: "Refused", refusal: { reason: "other-host" } })
    // Marked for another run, or for the same run id in another database: refused too.
    for (const other of [{ ...mark, run: "other-9f" }, { ...mark, database: "123/postgres" }]) {
      const marked = JSON.stringify({ pid: 4242, host: "build-7.example.org", token: "beef", boot: null, start: null, at: null, cluster: other }) + "\n"
      writeFileSync(lock, marked)
      expect(LockFile.acquire(lock, { cluster: mark })).toMatchObject({ _tag: "Refused", refusal: { reason: "other-host" } })
      expect(readFileSync(lock, "utf8")).toBe(marked)
    }
    // Not a step of a distributed run (no option): refused, mark or not.
    const ours = JSON.stringify({ pid: 4242, host: "build-7.example.org", token: "beef", boot: null, start: null, at: null, cluster: mark }) + "\n"
    writeFileSync(lock, ours)
    expect(LockFile.acquire(lock)).toMatchObject({ _tag: "Refused", refusal: { reason: "other-host", owner: { cluster: mark } } })
    // The run's step in that database: taken over, said to be so, and the new record carries the mark.
    const taken = LockFile.acquire(lock, { cluster: mark })
    expect(taken).toMatchObject({ _tag: "Held", via: "cluster", broke: { reason: "other-host", owner: { pid: 4242 } } })
    expect(LockFile.parse(readFileSync(lock, "utf8"))).toMatchObject({ pid: process.pid, host: hostname(), cluster: mark })
    // A live step of this host is judged by its pid, mark or not: refused.
    expect(LockFile.acquire(lock, { cluster: mark })).toMatchObject({ _tag: "Refused", refusal: { reason: "running", owner: { pid: process.pid } } })
  })

  it("a lock that names no owner is refused, and taken only with breakLock", () => {
    const lock = fresh()
    writeFileSync(lock, "")
    expect(LockFile.acquire(lock)).toMatchObject({ _tag: "Refused", refusal: { reason: "unreadable" } })
    expect(LockFile.acquire(lock, { breakLock: true })).toMatchObject({ _tag: "Held", broke: { reason: "unreadable" } })
  })

  it("a stale lock is taken over without breakLock, and nothing is said to have been broken", () => {
    const lock = fresh()
    writeFileSync(lock, record({ pid: dead[1] }))
    const taken = LockFile.acquire(lock)
    expect(taken._tag).toBe("Held")
    expect("broke" in taken).toBe(false)
  })

  it("release leaves a lock that no longer names us", () => {
    const lock = fresh()
    const taken = LockFile.acquire(lock)
    if (taken._tag !== "Held") throw new Error("not taken")
    const other = record({ pid: 4242, host: "build-7.example.org" })
    writeFileSync(lock, other)
    expect(LockFile.release(taken.held)).toBe(false)
    expect(readFileSync(lock, "utf8")).toBe(other)
  })

  it("a pid whose process started at another time is not the owner (its pid was reused)", () => {
    if (bootId === null) return
    const mine = LockFile.startTime(process.pid)
    expect(mine).toMatch(/^\d+$/)
    expect(LockFile.judge(record({ pid: process.pid, boot: bootId, start: mine }))).toMatchObject({ reason: "running" })
    expect(LockFile.judge(record({ pid: process.pid, boot: bootId, start: "1" }))).toBe("stale")
    expect(LockFile.judge(record({ pid: process.pid, boot: "0-another-boot", start: mine }))).toBe("stale")
  })
})
