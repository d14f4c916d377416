/**
 * The enqueued-token ledger: what each run on this machine has in flight per provider identity
 * and model, and the limits learned, so concurrent runs share one budget. A small JSON file
 * next to the response cache (`<cache>/enqueued-tokens.json`), read and rewritten whole under a
 * lock file (internal/LockFile.ts). Entries name their run, pid and host: those of a process
 * of this host that is gone (a crashed run) are dropped when the ledger is next read; those of
 * another host (a shared cache directory) after a day, the batch window.
 *
 * Without a cache directory the ledger lives in the run's memory: the run still schedules its
 * own shards, but shares with no other run.
 */
import { Deferred, Duration, Effect, Schema } from "effect"
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs"
import { hostname } from "node:os"
import { join } from "node:path"
import * as EnqueuedTokens from "./EnqueuedTokens.js"
import * as LockFile from "./internal/LockFile.js"

export const fileName = "enqueued-tokens.json"

const Entry = Schema.Struct({
  key: Schema.String,
  run: Schema.String,
  shard: Schema.String,
  tokens: Schema.Number,
  pid: Schema.Number,
  host: Schema.String,
  /** Unix ms when it was registered. */
  at: Schema.Number
})
export type Entry = typeof Entry.Type

const Learned = Schema.Struct({ tokens: Schema.Number, run: Schema.String, at: Schema.Number })

export const LedgerData = Schema.Struct({
  version: Schema.Literal(1),
  /** Limits learned from `token_limit_exceeded`, by key (EnqueuedTokens.keyOf). */
  limits: Schema.Record({ key: Schema.String, value: Learned }),
  entries: Schema.Array(Entry),
  /** Shards waiting for headroom (not counted: for a look at who waits, `sluice`'s tests among others). */
  waiting: Schema.optionalWith(Schema.Array(Entry), { default: () => [] })
})
export type LedgerData = typeof LedgerData.Type

export const empty = (): LedgerData => ({ version: 1, limits: {}, entries: [], waiting: [] })

/** Entries of other hosts are dropped after the provider's batch window. */
const FOREIGN_TTL_MS = 24 * 3600_000

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** The ledger without the entries of runs that are gone. */
export const prune = (data: LedgerData, now: number, host = hostname(), isAlive: (pid: number) => boolean = alive): LedgerData => {
  const live = (e: Entry) => (e.host === host ? isAlive(e.pid) : now - e.at < FOREIGN_TTL_MS)
  return { ...data, entries: data.entries.filter(live), waiting: data.waiting.filter(live) }
}

/** Tokens in flight for a key, by all runs. */
export const inFlight = (data: LedgerData, key: string): number => data.entries.filter((e) => e.key === key).reduce((a, e) => a + e.tokens, 0)

export interface Store {
  /** Reads the ledger (pruned), applies `f`, writes what it returns; one process at a time. */
  readonly update: <A>(f: (data: LedgerData) => readonly [A, LedgerData]) => Effect.Effect<A>
}

export const inMemory = (): Store => {
  let data = empty()
  return {
    update: (f) =>
      Effect.sync(() => {
        const [a, next] = f(prune(data, Date.now()))
        data = next
        return a
      })
  }
}

const decode = Schema.decodeUnknownOption(Schema.parseJson(LedgerData))

/** The ledger file in `dir` (the response cache's directory). */
export const file = (dir: string): Store => {
  const path = join(dir, fileName)
  const lockPath = `${path}.lock`
  const take: Effect.Effect<LockFile.Held> = Effect.suspend(() => {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const outcome = LockFile.acquire(lockPath)
    // Held by another run for the few milliseconds of its update: try again shortly.
    return outcome._tag === "Held" ? Effect.succeed(outcome.held) : Effect.zipRight(Effect.sleep(Duration.millis(5)), take)
  })
  return {
    update: (f) =>
      Effect.acquireUseRelease(
        take,
        () =>
          Effect.sync(() => {
            let text: string | undefined
            try {
              text = readFileSync(path, "utf8")
            } catch {
              text = undefined
            }
            // A ledger that cannot be read is started afresh: it holds nothing that outlives its runs but learned limits.
            const data = text === undefined ? empty() : decode(text).pipe((o) => (o._tag === "Some" ? o.value : empty()))
            const [a, next] = f(prune(data, Date.now()))
            const tmp = `${path}.${process.pid}.tmp`
            writeFileSync(tmp, JSON.stringify(next) + "\n", { mode: 0o600 })
            renameSync(tmp, path)
            return a
          }),
        (held) => Effect.sync(() => void LockFile.release(held))
      )
  }
}

export interface Scheduler {
  /**
   * Runs `work` (submitting and polling a shard) once the shard's tokens fit under its key's
   * limit beside what is in flight, holding them in the ledger until `work` ends. With `wait`
   * false (a batch already created) the tokens are registered at once. Returns the tokens in
   * flight beside the shard's when it went.
   */
  readonly hold: <A, E, R>(
    shard: { readonly id: string; readonly key: string; readonly tokens: number; readonly wait: boolean },
    work: Effect.Effect<A, E, R>
  ) => Effect.Effect<readonly [A, number], E, R>
  /** Records a learned limit for a key (the lower one wins). */
  readonly learn: (key: string, tokens: number) => Effect.Effect<void>
  /** The limit a key is scheduled under now (configured, learned), if any. */
  readonly limitOf: (key: string) => Effect.Effect<number | undefined>
  /** Shards waiting for token headroom. */
  readonly waiting: () => number
}

export const scheduler = (options: {
  readonly store: Store
  readonly runId: string
  /** The configured limits (`--max-enqueued-tokens`): for every model, or by model. */
  readonly configured: EnqueuedTokens.Limits | undefined
  /** How often a waiting shard looks again (other runs' releases are seen only by reading). */
  readonly recheck?: Duration.DurationInput
}): Effect.Effect<Scheduler> =>
  Effect.gen(function* () {
    const { store, runId, configured } = options
    const recheck = options.recheck ?? Duration.millis(500)
    const host = hostname()
    // Waiting shards in order of arrival, per key: the first goes first (a big shard is not starved by small ones).
    const queue = new Map<string, Array<string>>()
    let wake = yield* Deferred.make<void>()
    const signal = Effect.gen(function* () {
      const old = wake
      wake = yield* Deferred.make<void>()
      yield* Deferred.succeed(old, undefined)
    })
    const limitIn = (data: LedgerData, key: string) =>
      EnqueuedTokens.lower(EnqueuedTokens.limitFor(configured, EnqueuedTokens.modelOfKey(key)), data.limits[key]?.tokens)

    const isOf = (e: Entry, shard: { readonly id: string }) => e.run === runId && e.shard === shard.id
    const entryOf = (shard: { readonly id: string; readonly key: string; readonly tokens: number }): Entry =>
      ({ key: shard.key, run: runId, shard: shard.id, tokens: shard.tokens, pid: process.pid, host, at: Date.now() })
    const tryTake = (shard: { readonly id: string; readonly key: string; readonly tokens: number }, force: boolean) =>
      store.update((data): readonly [number | undefined, LedgerData] => {
        const mine = data.entries.filter((e) => !isOf(e, shard))
        const others = inFlight({ ...data, entries: mine }, shard.key)
        const entry = entryOf(shard)
        if (!force && !EnqueuedTokens.fits(others, shard.tokens, limitIn(data, shard.key))) return [undefined, data]
        return [others, { ...data, entries: [...mine, entry], waiting: data.waiting.filter((e) => !isOf(e, shard)) }]
      })

    const give = (shard: { readonly id: string }) =>
      store.update((data) => [undefined, { ...data, entries: data.entries.filter((e) => !(e.run === runId && e.shard === shard.id)) }] as const).pipe(
        Effect.zipRight(signal)
      )

    const acquire = (shard: { readonly id: string; readonly key: string; readonly tokens: number; readonly wait: boolean }): Effect.Effect<number> =>
      Effect.gen(function* () {
        if (!shard.wait) return (yield* tryTake(shard, true))!
        let waiters = queue.get(shard.key)
        if (waiters === undefined) queue.set(shard.key, (waiters = []))
        const line = waiters
        line.push(shard.id)
        yield* store.update((data) => [undefined, { ...data, waiting: [...data.waiting.filter((e) => !isOf(e, shard)), entryOf(shard)] }] as const)
        const attempt: Effect.Effect<number> = Effect.gen(function* () {
          const woken = wake
          if (line[0] === shard.id) {
            const others = yield* tryTake(shard, false)
            if (others !== undefined) return others
          }
          // Interruptible (the wait holds nothing yet): otherwise the race could not stop its loser.
          yield* Effect.interruptible(Effect.raceFirst(Deferred.await(woken), Effect.sleep(recheck)))
          return yield* attempt
        })
        return yield* attempt.pipe(
          Effect.ensuring(
            Effect.suspend(() => {
              line.splice(line.indexOf(shard.id), 1)
              return store.update((data) => [undefined, { ...data, waiting: data.waiting.filter((e) => !isOf(e, shard)) }] as const).pipe(
                Effect.zipRight(signal)
              )
            })
          )
        )
      })

    return {
      hold: (shard, work) =>
        Effect.acquireUseRelease(
          acquire(shard),
          (others) => Effect.map(work, (a) => [a, others] as const),
          () => give(shard)
        ),
      learn: (key, tokens) =>
        store.update((data) => {
          const known = data.limits[key]?.tokens
          if (known !== undefined && known <= tokens) return [undefined, data] as const
          return [undefined, { ...data, limits: { ...data.limits, [key]: { tokens, run: runId, at: Date.now() } } }] as const
        }).pipe(Effect.zipRight(signal)),
      limitOf: (key) => store.update((data) => [limitIn(data, key), data] as const),
      waiting: () => [...queue.values()].reduce((a, w) => a + w.length, 0)
    }
  })
