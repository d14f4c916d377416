/**
 * The cluster's enqueued-token ledger (ClusterLedger.ts) on a real PostgreSQL server
 * (scripts/lib/tempPostgres.ts). Two clients with pools of their own stand for two machines.
 * Skipped, saying why, where the server binaries are not installed.
 */
import { fork } from "node:child_process"
import { fileURLToPath } from "node:url"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Context, Duration, Effect, Layer, Redacted, Ref } from "effect"
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest"
import * as TempPostgres from "../../../scripts/lib/tempPostgres.js"
import * as ClusterLedger from "../src/ClusterLedger.js"
import * as TokenLedger from "../src/TokenLedger.js"

const { skipReason } = TempPostgres
if (skipReason !== undefined) console.warn(`ClusterLedger tests skipped: ${skipReason}`)

let server: TempPostgres.TempPostgres | undefined

/** Runs `f` with a client of its own (a pool of its own: another machine). */
const withClient = <A, E>(f: (sql: SqlClient.SqlClient) => Effect.Effect<A, E, SqlClient.SqlClient>) =>
  Effect.scoped(
    Effect.flatMap(Layer.build(PgClient.layer({ url: Redacted.make(server!.url), maxConnections: 8 })), (ctx) => {
      const sql = Context.get(ctx, SqlClient.SqlClient)
      return Effect.provideService(f(sql), SqlClient.SqlClient, sql)
    })
  )

const holderScript = fileURLToPath(new URL("./fixtures/ledger-holder.ts", import.meta.url))
const repoRoot = fileURLToPath(new URL("../../..", import.meta.url))

const ledgerRow = () =>
  Effect.runPromise(
    withClient((sql) => Effect.map(sql<{ data: TokenLedger.LedgerData }>`SELECT data FROM sluice_token_ledger WHERE name = 'enqueued-tokens'`, (rows) => rows[0]!.data))
  )

describe.skipIf(skipReason !== undefined)("ClusterLedger: the enqueued-token ledger in PostgreSQL", () => {
  beforeAll(async () => {
    server = await TempPostgres.start({ prefix: "sluice-ledger-pg-" })
  }, 60_000)
  afterAll(() => server?.stop())

  it("creates its table when missing, on two clients at once", async () => {
    const made = await Effect.runPromise(
      Effect.all([withClient(() => ClusterLedger.make), withClient(() => ClusterLedger.make)], { concurrency: 2 })
    )
    expect(made).toHaveLength(2)
    expect((await ledgerRow()).entries).toEqual([])
  }, 60_000)

  it("concurrent updates from two machines serialise: none is lost", async () => {
    const perClient = 40
    const update = (store: TokenLedger.Store, run: string, i: number) =>
      store.update((d) => {
        const entry: TokenLedger.Entry = { key: "serial", run, shard: `s${i}`, tokens: 1, pid: 1, host: "test", at: Date.now(), expires: Date.now() + 600_000 }
        return [undefined, { ...d, entries: [...d.entries, entry] }] as const
      })
    const client = (run: string) =>
      withClient(() =>
        Effect.flatMap(ClusterLedger.make, (store) => Effect.forEach(Array.from({ length: perClient }, (_, i) => i), (i) => update(store, run, i), { concurrency: 8 }))
      )
    await Effect.runPromise(Effect.all([client("a"), client("b")], { concurrency: 2 }))
    const entries = (await ledgerRow()).entries.filter((e) => e.key === "serial")
    // Read-modify-write of one document 80 times at once, 16 at a time: without the row lock most would be lost.
    expect(entries).toHaveLength(2 * perClient)
    expect(new Set(entries.map((e) => `${e.run} ${e.shard}`)).size).toBe(2 * perClient)
  }, 60_000)

  it("two runs on two machines hold at most the limit together, every shard going once there is room; the line is in the ledger", async () => {
    const leases = { hold: Duration.minutes(15), wait: Duration.minutes(2) }
    const key = "openai http://x gpt-4o-mini"
    const result = await Effect.runPromise(
      Effect.gen(function* () {
        const now = yield* Ref.make(0)
        const max = yield* Ref.make(0)
        const inLine = yield* Ref.make(false)
        const run = (runId: string) =>
          withClient(() =>
            Effect.gen(function* () {
              const store = yield* ClusterLedger.make
              const s = yield* TokenLedger.scheduler({ store, runId, configured: 25, leases })
              const shard = (id: string) =>
                Effect.gen(function* () {
                  // As a shard's workflow does: ask, and without headroom ask again after a wait.
                  for (;;) {
                    const went = yield* s.hold(
                      { id, key, tokens: 10, wait: true, keep: () => false },
                      Effect.gen(function* () {
                        const n = yield* Ref.updateAndGet(now, (x) => x + 10)
                        yield* Ref.update(max, (m) => Math.max(m, n))
                        yield* Effect.sleep(Duration.millis(20))
                        yield* Ref.update(now, (x) => x - 10)
                      })
                    ).pipe(Effect.as(true), Effect.catchTag("NoHeadroom", () => Effect.succeed(false)))
                    if (went) return
                    if (yield* ClusterLedger.inLine(runId, id)) yield* Ref.set(inLine, true)
                    yield* Effect.sleep(Duration.millis(5))
                  }
                })
              yield* Effect.forEach(["s1", "s2", "s3", "s4", "s5"], shard, { concurrency: "unbounded", discard: true })
            })
          )
        yield* Effect.all([run("r1"), run("r2")], { concurrency: 2 })
        return { max: yield* Ref.get(max), inLine: yield* Ref.get(inLine) }
      })
    )
    expect(result.max).toBe(20)
    expect(result.inLine).toBe(true)
    const after = await ledgerRow()
    expect(after.entries.filter((e) => e.key === key)).toEqual([])
    expect(after.waiting.filter((e) => e.key === key)).toEqual([])
    // Both runs stated their configured limit for the key.
    expect(new Set((after.configured ?? []).filter((c) => c.key === key).map((c) => c.run))).toEqual(new Set(["r1", "r2"]))
  }, 120_000)

  describe("leases", () => {
    afterEach(() => void vi.useRealTimers())

    it("tokens held by a worker that dies (SIGKILL) stay held until their lease ends, then another run is admitted — the clock driven, not waited for", async () => {
      const key = "openai http://x lease-model"
      const tokens = 100
      // The lease far longer than the test: it ends only when the test moves this process's clock past it.
      const leaseMs = 3_600_000
      const holder = fork(holderScript, [server!.url, "dead-run", "s1", key, String(tokens), String(leaseMs)], {
        cwd: repoRoot,
        execArgv: ["--import", "tsx"],
        stdio: ["ignore", "inherit", "inherit", "ipc"]
      })
      const exited = new Promise<NodeJS.Signals | null>((resolve) => holder.on("exit", (_, signal) => resolve(signal)))
      await new Promise<void>((resolve, reject) => {
        holder.on("message", (m: { type: string }) => m.type === "held" && resolve())
        holder.on("exit", (code) => reject(new Error(`the holder exited (${code}) before holding`)))
      })
      const [held] = (await ledgerRow()).entries.filter((e) => e.key === key)
      expect(held).toMatchObject({ run: "dead-run", shard: "s1", tokens, pid: holder.pid })
      const expires = held!.expires!
      expect(expires).toBeGreaterThan(Date.now())

      // Another run's shard, under a limit with no room beside the holder's tokens.
      const ask = () =>
        Effect.runPromise(
          withClient(() =>
            Effect.gen(function* () {
              const store = yield* ClusterLedger.make
              const s = yield* TokenLedger.scheduler({ store, runId: "next-run", configured: tokens + 50, leases: { hold: Duration.minutes(15), wait: Duration.minutes(2) } })
              return yield* s.hold({ id: "n1", key, tokens, wait: true, keep: () => false }, Effect.void).pipe(
                Effect.map(([, beside]) => ({ admitted: true, beside })),
                Effect.catchTag("NoHeadroom", () => Effect.succeed({ admitted: false, beside: null }))
              )
            })
          )
        )
      expect(await ask()).toEqual({ admitted: false, beside: null })

      holder.kill("SIGKILL")
      expect(await exited).toBe("SIGKILL")
      // Dead, on this very host: its entry is leased, not tied to its pid, so it stands until its lease ends.
      expect(await ask()).toEqual({ admitted: false, beside: null })
      vi.useFakeTimers({ toFake: ["Date"] })
      vi.setSystemTime(expires - 1)
      expect(await ask()).toEqual({ admitted: false, beside: null })
      expect((await ledgerRow()).entries.filter((e) => e.key === key).map((e) => e.run)).toEqual(["dead-run"])

      // Past its lease: gone from the ledger, and the other run's shard goes with nothing beside it.
      vi.setSystemTime(expires + 1)
      expect(await ask()).toEqual({ admitted: true, beside: 0 })
      const after = await ledgerRow()
      expect(after.entries.filter((e) => e.key === key)).toEqual([])
      expect(after.waiting.filter((e) => e.key === key)).toEqual([])
    }, 60_000)
  })
})
