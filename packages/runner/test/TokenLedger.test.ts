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
