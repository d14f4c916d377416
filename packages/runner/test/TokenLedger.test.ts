import { Deferred, Duration, Effect, Fiber, Ref } from "effect"
import { describe, expect, it } from "vitest"
import * as TokenLedger from "../src/TokenLedger.js"

describe("scheduler", () => {
  it("holds at most the limit in flight and runs every shard", async () => {
    const out = await Effect.runPromise(
      Effect.gen(function* () {
        const s = yield* TokenLedger.scheduler({ store: TokenLedger.inMemory(), runId: "r", configured: 25, recheck: Duration.millis(20) })
        const now = yield* Ref.make(0)
        const max = yield* Ref.make(0)
        const done = yield* Ref.make(0)
        const work = Effect.gen(function* () {
          const n = yield* Ref.updateAndGet(now, (x) => x + 10)
          yield* Ref.update(max, (m) => Math.max(m, n))
          yield* Effect.sleep(Duration.millis(5))
          yield* Ref.update(now, (x) => x - 10)
          yield* Ref.update(done, (x) => x + 1)
        })
        yield* Effect.all(
          Array.from({ length: 6 }, (_, i) => s.hold({ id: `s${i}`, key: "k", tokens: 10, wait: true }, work)),
          { concurrency: "unbounded" }
        )
        return { max: yield* Ref.get(max), done: yield* Ref.get(done) }
      })
    )
    expect(out).toEqual({ max: 20, done: 6 })
  })
})

describe("file ledger", () => {
  it("two schedulers on one file hold at most the limit together", async () => {
    const { mkdtempSync } = await import("node:fs")
    const { tmpdir } = await import("node:os")
    const { join } = await import("node:path")
    const dir = mkdtempSync(join(tmpdir(), "sluice-ledger-"))
    const out = await Effect.runPromise(
      Effect.gen(function* () {
        const a = yield* TokenLedger.scheduler({ store: TokenLedger.file(dir), runId: "a", configured: 25, recheck: Duration.millis(20) })
        const b = yield* TokenLedger.scheduler({ store: TokenLedger.file(dir), runId: "b", configured: 25, recheck: Duration.millis(20) })
        const now = yield* Ref.make(0)
        const max = yield* Ref.make(0)
        const done = yield* Ref.make(0)
        const work = Effect.gen(function* () {
          const n = yield* Ref.updateAndGet(now, (x) => x + 10)
          yield* Ref.update(max, (m) => Math.max(m, n))
          yield* Effect.sleep(Duration.millis(5))
          yield* Ref.update(now, (x) => x - 10)
          yield* Ref.update(done, (x) => x + 1)
        })
        yield* Effect.all(
          [...Array.from({ length: 6 }, (_, i) => a.hold({ id: `s${i}`, key: "k", tokens: 10, wait: true }, work)),
           ...Array.from({ length: 6 }, (_, i) => b.hold({ id: `s${i}`, key: "k", tokens: 10, wait: true }, work))],
          { concurrency: "unbounded" }
        )
        return { max: yield* Ref.get(max), done: yield* Ref.get(done) }
      })
    )
    expect(out).toEqual({ max: 20, done: 12 })
  })
})

describe("ledger entries of runs that are gone", () => {
  const entry = (run: string, pid: number, host: string, at = Date.now()): TokenLedger.Entry => ({ key: "k", run, shard: "s1", tokens: 10, pid, host, at })

  it("drops a dead process's entries on this host, keeps a live one's, and another host's for a day", async () => {
    const { spawnSync } = await import("node:child_process")
    const { hostname } = await import("node:os")
    // A pid that was a process of this host and is no longer.
    const dead = spawnSync(process.execPath, ["-e", ""]).pid!
    const now = Date.now()
    const data: TokenLedger.LedgerData = {
      version: 1,
      limits: {},
      entries: [entry("crashed", dead, hostname()), entry("live", process.pid, hostname()), entry("far", 1, "elsewhere", now - 3600_000), entry("old", 1, "elsewhere", now - 25 * 3600_000)],
      waiting: [entry("crashed", dead, hostname()), entry("live", process.pid, hostname())]
    }
    expect(TokenLedger.prune(data, now).entries.map((e) => e.run)).toEqual(["live", "far"])
    expect(TokenLedger.prune(data, now).waiting.map((e) => e.run)).toEqual(["live"])
  })

  it("a crashed run's tokens in the ledger file do not hold back a new run", async () => {
    const { mkdtempSync, writeFileSync, readFileSync } = await import("node:fs")
    const { spawnSync } = await import("node:child_process")
    const { hostname, tmpdir } = await import("node:os")
    const { join } = await import("node:path")
    const dir = mkdtempSync(join(tmpdir(), "sluice-ledger-"))
    const dead = spawnSync(process.execPath, ["-e", ""]).pid!
    const crashed: TokenLedger.LedgerData = { version: 1, limits: { k: { tokens: 25, run: "crashed", at: 0 } }, entries: [{ ...entry("crashed", dead, hostname()), tokens: 20 }], waiting: [] }
    writeFileSync(join(dir, TokenLedger.fileName), JSON.stringify(crashed))
    const others = await Effect.runPromise(
      Effect.gen(function* () {
        const s = yield* TokenLedger.scheduler({ store: TokenLedger.file(dir), runId: "new", configured: undefined, recheck: Duration.millis(10) })
        // 20 crashed + 10 would be over the learned 25: it goes at once only because the dead entry is dropped.
        const [, beside] = yield* s.hold({ id: "s1", key: "k", tokens: 10, wait: true }, Effect.void).pipe(Effect.timeout("10 seconds"))
        return beside
      })
    )
    expect(others).toBe(0)
    const after = JSON.parse(readFileSync(join(dir, TokenLedger.fileName), "utf8")) as TokenLedger.LedgerData
    // The learned limit stays; the new run's entry is gone once its work ended.
    expect(after.limits["k"]?.tokens).toBe(25)
    expect(after.entries).toEqual([])
    expect(after.waiting).toEqual([])
  })

  it("a limit learned lower replaces a higher one, never the reverse", async () => {
    const out = await Effect.runPromise(
      Effect.gen(function* () {
        const s = yield* TokenLedger.scheduler({ store: TokenLedger.inMemory(), runId: "r", configured: 100 })
        const first = yield* s.limitOf("k")
        yield* s.learn("k", 40)
        yield* s.learn("k", 60)
        return [first, yield* s.limitOf("k")]
      })
    )
    expect(out).toEqual([100, 40])
  })

  it("configured by model: each key is limited by its model's value (a bare number for the rest), learned limits still lower it", async () => {
    const small = "openai https://api.openai.com/v1 gpt-4o"
    const big = "openai https://api.openai.com/v1 gpt-4o-mini"
    const other = "openai https://api.openai.com/v1 o3-mini"
    const out = await Effect.runPromise(
      Effect.gen(function* () {
        const s = yield* TokenLedger.scheduler({ store: TokenLedger.inMemory(), runId: "r", configured: { "gpt-4o": 90, "gpt-4o-mini": 2000, "*": 500 } })
        yield* s.learn(big, 1500)
        return [yield* s.limitOf(small), yield* s.limitOf(big), yield* s.limitOf(other)]
      })
    )
    expect(out).toEqual([90, 1500, 500])
  })

  it("configured by model: a shard of one model waits for its own model's headroom only", async () => {
    const small = "openai https://api.openai.com/v1 gpt-4o"
    const big = "openai https://api.openai.com/v1 gpt-4o-mini"
    const order = await Effect.runPromise(
      Effect.gen(function* () {
        const s = yield* TokenLedger.scheduler({ store: TokenLedger.inMemory(), runId: "r", configured: { "gpt-4o": 30, "gpt-4o-mini": 1000 }, recheck: Duration.millis(10) })
        const log: Array<string> = []
        const gate = yield* Deferred.make<void>()
        // gpt-4o's budget is taken until the gate opens; gpt-4o-mini's shard goes meanwhile.
        const started = yield* Deferred.make<void>()
        const first = yield* Effect.fork(
          s.hold({ id: "a", key: small, tokens: 20, wait: true }, Effect.sync(() => log.push("a")).pipe(Effect.zipRight(Deferred.succeed(started, undefined)), Effect.zipRight(Deferred.await(gate))))
        )
        yield* Deferred.await(started)
        const second = yield* Effect.fork(s.hold({ id: "b", key: small, tokens: 20, wait: true }, Effect.sync(() => log.push("b"))))
        yield* s.hold({ id: "c", key: big, tokens: 500, wait: true }, Effect.sync(() => log.push("c")))
        const before = [...log]
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(first)
        yield* Fiber.join(second)
        return { before, after: log }
      })
    )
    expect(order.before).toEqual(["a", "c"])
    expect(order.after).toEqual(["a", "c", "b"])
  })
})

describe("a cluster's ledger: leased entries (Leases)", () => {
  const leases = { hold: Duration.minutes(15), wait: Duration.minutes(2) }
  const key = "k"

  it("never waits in the process: without headroom NoHeadroom, the shard in line; a batch still enqueued keeps its tokens past the step until released", async () => {
    const out = await Effect.runPromise(
      Effect.gen(function* () {
        const store = TokenLedger.inMemory()
        const s = yield* TokenLedger.scheduler({ store, runId: "r", configured: 25, leases })
        const snapshot = store.update((d) => [d, d] as const)
        // a's batch is created and still enqueued at the end of its step: kept.
        const [, besideA] = yield* s.hold({ id: "a", key, tokens: 20, wait: true, keep: () => true }, Effect.void)
        const refused = yield* Effect.flip(s.hold({ id: "b", key, tokens: 10, wait: true, keep: () => true }, Effect.die("b must not run")))
        const held = yield* snapshot
        // The next step of a (its batch created: wait false) takes its own entry again, renewing it.
        const [, again] = yield* s.hold({ id: "a", key, tokens: 20, wait: false, keep: () => true }, Effect.void)
        yield* s.release("a")
        const [, besideB] = yield* s.hold({ id: "b", key, tokens: 10, wait: true, keep: () => false }, Effect.void)
        return { besideA, refused: refused._tag, held, again, besideB, after: yield* snapshot }
      })
    )
    expect(out.besideA).toBe(0)
    expect(out.refused).toBe("NoHeadroom")
    expect(out.held.entries.map((e) => [e.shard, e.tokens])).toEqual([["a", 20]])
    expect(out.held.entries[0]!.expires).toBeGreaterThan(Date.now() + 14 * 60_000)
    expect(out.held.waiting.map((e) => e.shard)).toEqual(["b"])
    expect(out.again).toBe(0)
    expect(out.besideB).toBe(0)
    // b went and its batch ended (keep false): nothing held, nobody in line.
    expect(out.after.entries).toEqual([])
    expect(out.after.waiting).toEqual([])
  })

  it("the line is the ledger's: a shard waiting longer goes before a later one that would fit", async () => {
    const out = await Effect.runPromise(
      Effect.gen(function* () {
        const store = TokenLedger.inMemory()
        // Two runs (two workers' steps) on one ledger.
        const r1 = yield* TokenLedger.scheduler({ store, runId: "r1", configured: 30, leases })
        const r2 = yield* TokenLedger.scheduler({ store, runId: "r2", configured: 30, leases })
        yield* r1.hold({ id: "a", key, tokens: 20, wait: true, keep: () => true }, Effect.void)
        // big waits (20 + 20 > 30); small would fit beside a (20 + 10), but big is ahead of it.
        const big = yield* Effect.either(r1.hold({ id: "big", key, tokens: 20, wait: true, keep: () => true }, Effect.void))
        yield* Effect.sleep(Duration.millis(2))
        const small = yield* Effect.either(r2.hold({ id: "small", key, tokens: 10, wait: true, keep: () => true }, Effect.void))
        yield* r1.release("a")
        const bigNow = yield* Effect.either(r1.hold({ id: "big", key, tokens: 20, wait: true, keep: () => true }, Effect.void))
        const smallNow = yield* Effect.either(r2.hold({ id: "small", key, tokens: 10, wait: true, keep: () => true }, Effect.void))
        return [big._tag, small._tag, bigNow._tag, smallNow._tag]
      })
    )
    expect(out).toEqual(["Left", "Left", "Right", "Right"])
  })

  it("runs with different limits for one model: the lowest live one applies to every run", async () => {
    const out = await Effect.runPromise(
      Effect.gen(function* () {
        const store = TokenLedger.inMemory()
        const high = yield* TokenLedger.scheduler({ store, runId: "high", configured: 100, leases })
        const before = yield* high.limitOf(key)
        const low = yield* TokenLedger.scheduler({ store, runId: "low", configured: { "*": 30 }, leases })
        yield* low.limitOf(key)
        yield* high.hold({ id: "a", key, tokens: 25, wait: true, keep: () => true }, Effect.void)
        // 25 + 10 is under the high run's 100 but over the low run's 30: held back for both.
        const refused = yield* Effect.either(high.hold({ id: "b", key, tokens: 10, wait: true }, Effect.void))
        return { before, after: yield* high.limitOf(key), refused: refused._tag }
      })
    )
    expect(out).toEqual({ before: 100, after: 30, refused: "Left" })
  })

  it("a run that finished stops lowering the others' limit at once", async () => {
    const out = await Effect.runPromise(
      Effect.gen(function* () {
        const store = TokenLedger.inMemory()
        const high = yield* TokenLedger.scheduler({ store, runId: "high", configured: 100, leases })
        const low = yield* TokenLedger.scheduler({ store, runId: "low", configured: 30, leases })
        yield* low.limitOf(key)
        const during = yield* high.limitOf(key)
        yield* low.finished()
        return [during, yield* high.limitOf(key)]
      })
    )
    expect(out).toEqual([30, 100])
  })

  it("a leased entry lives until its lease ends, whatever its process; a run's configured limit too", () => {
    const now = Date.now()
    const leased = (shard: string, expires: number): TokenLedger.Entry => ({ key, run: "r", shard, tokens: 10, pid: 1, host: "elsewhere", at: now - 48 * 3600_000, expires })
    const data: TokenLedger.LedgerData = {
      version: 1,
      limits: {},
      entries: [leased("live", now + 1000), leased("lapsed", now - 1)],
      waiting: [leased("in-line", now + 1000), leased("gone", now - 1)],
      configured: [{ key, run: "r", tokens: 5, expires: now + 1000 }, { key, run: "old", tokens: 1, expires: now - 1 }]
    }
    const pruned = TokenLedger.prune(data, now, "here", () => false)
    expect(pruned.entries.map((e) => e.shard)).toEqual(["live"])
    expect(pruned.waiting.map((e) => e.shard)).toEqual(["in-line"])
    expect(pruned.configured!.map((c) => c.run)).toEqual(["r"])
  })
})

describe("batches in flight per key (--max-batches)", () => {
  it("one machine: two runs on one ledger hold at most the cap of batches together, every shard going", async () => {
    const out = await Effect.runPromise(
      Effect.gen(function* () {
        const store = TokenLedger.inMemory()
        const a = yield* TokenLedger.scheduler({ store, runId: "a", configured: undefined, batches: 2, recheck: Duration.millis(10) })
        const b = yield* TokenLedger.scheduler({ store, runId: "b", configured: undefined, batches: { "*": 2 }, recheck: Duration.millis(10) })
        const now = yield* Ref.make(0)
        const max = yield* Ref.make(0)
        const work = Effect.gen(function* () {
          const n = yield* Ref.updateAndGet(now, (x) => x + 1)
          yield* Ref.update(max, (m) => Math.max(m, n))
          yield* Effect.sleep(Duration.millis(5))
          yield* Ref.update(now, (x) => x - 1)
        })
        yield* Effect.all(
          [...Array.from({ length: 5 }, (_, i) => a.hold({ id: `s${i}`, key: "k", tokens: 1, wait: true }, work)),
           ...Array.from({ length: 5 }, (_, i) => b.hold({ id: `s${i}`, key: "k", tokens: 1, wait: true }, work))],
          { concurrency: "unbounded" }
        )
        return yield* Ref.get(max)
      })
    )
    expect(out).toBe(2)
  })

  it("a cluster: the lowest cap a live run gave applies to every run; other models are not counted", async () => {
    const leases = { hold: Duration.minutes(15), wait: Duration.minutes(2) }
    const mini = "openai http://x gpt-4o-mini"
    const other = "openai http://x gpt-4o"
    const out = await Effect.runPromise(
      Effect.gen(function* () {
        const store = TokenLedger.inMemory()
        const wide = yield* TokenLedger.scheduler({ store, runId: "wide", configured: undefined, batches: 5, leases })
        const narrow = yield* TokenLedger.scheduler({ store, runId: "narrow", configured: undefined, batches: { "gpt-4o-mini": 1 }, leases })
        yield* narrow.limitOf(mini)
        const go = (s: TokenLedger.Scheduler, id: string, key: string) =>
          Effect.either(s.hold({ id, key, tokens: 1, wait: true, keep: () => true }, Effect.void)).pipe(Effect.map((e) => e._tag))
        return [yield* go(wide, "a", mini), yield* go(wide, "b", mini), yield* go(wide, "c", other), yield* go(narrow, "d", other)]
      })
    )
    // gpt-4o-mini: one batch at most (the narrow run's cap); gpt-4o: the wide run's 5, the narrow run gave none for it.
    expect(out).toEqual(["Right", "Left", "Right", "Right"])
  })
})
