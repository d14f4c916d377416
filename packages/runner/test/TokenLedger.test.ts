import { Duration, Effect, Ref } from "effect"
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
