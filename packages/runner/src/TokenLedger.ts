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
 *
 * In a cluster (ClusterLedger.ts: the same document in PostgreSQL) a shard's steps run in many
 * processes, one after the other: its entry belongs to the (run id, shard), not to a process. It
 * is taken before the batch is created, kept between steps while the batch is enqueued at the
 * provider, and given back when the batch ends or the shard is collected, cancelled or re-cut
 * (`Scheduler.release`). Liveness is a lease, not a pid: every step of the shard renews it, so an
 * entry whose run or shard is gone (a cancelled workflow, a cluster stopped for long) lapses by
 * itself — a journal of another run is not ours to read, and the lease needs nothing but time.
 * Should a lease lapse under a batch still running, the provider's own `token_limit_exceeded`
 * remains the backstop (a learned limit, the shard back to waiting: nothing lost, nothing paid twice).
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
  /** Unix ms when it was registered (waiting: when it started to wait, its place in line). */
  at: Schema.Number,
  /** Unix ms its lease ends (a cluster's entry, see above): live until then, whatever its pid. */
  expires: Schema.optionalWith(Schema.Number, { exact: true })
})
export type Entry = typeof Entry.Type

/** A run's configured limits of a key (tokens, batches), seen by the other runs of a cluster while its lease lasts. */
const Configured = Schema.Struct({
  key: Schema.String,
  run: Schema.String,
  tokens: Schema.optionalWith(Schema.Number, { exact: true }),
  batches: Schema.optionalWith(Schema.Number, { exact: true }),
  expires: Schema.Number
})
export type Configured = typeof Configured.Type

const Learned = Schema.Struct({ tokens: Schema.Number, run: Schema.String, at: Schema.Number })

export const LedgerData = Schema.Struct({
  version: Schema.Literal(1),
  /** Limits learned from `token_limit_exceeded`, by key (EnqueuedTokens.keyOf). */
  limits: Schema.Record({ key: Schema.String, value: Learned }),
  entries: Schema.Array(Entry),
  /** Shards waiting for headroom (not counted: for a look at who waits, `sluice`'s tests among others). */
  waiting: Schema.optionalWith(Schema.Array(Entry), { default: () => [] }),
  /** Limits configured by the runs of a cluster (`--max-enqueued-tokens`): the lowest live one applies to all. */
  configured: Schema.optionalWith(Schema.Array(Configured), { exact: true })
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
  const live = (e: Entry) => (e.expires !== undefined ? now < e.expires : e.host === host ? isAlive(e.pid) : now - e.at < FOREIGN_TTL_MS)
  return {
    ...data,
    entries: data.entries.filter(live),
    waiting: data.waiting.filter(live),
    ...(data.configured === undefined ? {} : { configured: data.configured.filter((c) => now < c.expires) })
  }
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

/** No headroom now for a shard of a cluster's run: it keeps its place in line, and its workflow asks again after a wait. */
export class NoHeadroom extends Schema.TaggedError<NoHeadroom>()("NoHeadroom", { key: Schema.String, shard: Schema.String }) {}

/** A cluster's ledger (see the top): entries leased to their (run, shard) rather than held by a process. */
export interface Leases {
  /** How long a shard's entry, and a run's configured limit, live without a step of theirs renewing them. */
  readonly hold: Duration.DurationInput
  /** How long a waiting shard keeps its place in line without asking again. */
  readonly wait: Duration.DurationInput
}

export interface Scheduler {
  /**
   * Runs `work` (submitting and polling a shard) once the shard's tokens fit under its key's
   * limit beside what is in flight, holding them in the ledger until `work` ends. With `wait`
   * false (a batch already created) the tokens are registered at once. Returns the tokens in
   * flight beside the shard's when it went.
   *
   * With leases (a cluster) it does not wait: without headroom it fails with NoHeadroom, the
   * shard in line; and the tokens stay held after `work` while `keep` says the batch is still
   * enqueued (until `release`, or the lease lapses).
   */
  readonly hold: <A, E, R>(
    shard: { readonly id: string; readonly key: string; readonly tokens: number; readonly wait: boolean; readonly keep?: () => boolean },
    work: Effect.Effect<A, E, R>
  ) => Effect.Effect<readonly [A, number], E | NoHeadroom, R>
  /** Gives back what a shard holds, and its place in line (collected, cancelled, re-cut). */
  readonly release: (shard: string) => Effect.Effect<void>
  /** A cluster's run that finished: its configured limits stop applying to the other runs at once, not when their lease ends. */
  readonly finished: () => Effect.Effect<void>
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
  /** Batches in flight at most per key, all runs of the ledger together (`--max-batches`): for every model, or by model. */
  readonly batches?: EnqueuedTokens.Limits
  /** How often a waiting shard looks again (other runs' releases are seen only by reading). */
  readonly recheck?: Duration.DurationInput
  /** A cluster's ledger: entries leased, never waited for in the process (see Leases). */
  readonly leases?: Leases
}): Effect.Effect<Scheduler> =>
  Effect.gen(function* () {
    const { store, runId, configured, leases } = options
    const recheck = options.recheck ?? Duration.millis(500)
    const holdMs = leases === undefined ? undefined : Duration.toMillis(leases.hold)
    const waitMs = leases === undefined ? 0 : Duration.toMillis(leases.wait)
    const host = hostname()
    // Waiting shards in order of arrival, per key: the first goes first (a big shard is not starved by small ones).
    const queue = new Map<string, Array<string>>()
    let wake = yield* Deferred.make<void>()
    const signal = Effect.gen(function* () {
      const old = wake
      wake = yield* Deferred.make<void>()
      yield* Deferred.succeed(old, undefined)
    })
    const ownLimit = (key: string) => EnqueuedTokens.limitFor(configured, EnqueuedTokens.modelOfKey(key))
    const ownBatches = (key: string) => EnqueuedTokens.limitFor(options.batches, EnqueuedTokens.modelOfKey(key))
    const othersOf = (data: LedgerData, key: string) => (data.configured ?? []).filter((c) => c.key === key && c.run !== runId)
    // Two runs of a cluster with different limits for one model: the lowest live one applies to
    // both (the limit is the organisation's; whoever configured less knows of less room).
    const limitIn = (data: LedgerData, key: string) =>
      othersOf(data, key).reduce((limit, c) => EnqueuedTokens.lower(limit, c.tokens), EnqueuedTokens.lower(ownLimit(key), data.limits[key]?.tokens))
    const batchesIn = (data: LedgerData, key: string) => othersOf(data, key).reduce((cap, c) => EnqueuedTokens.lower(cap, c.batches), ownBatches(key))
    /** A cluster's run states its configured limits of a key for the other runs, renewing their lease. */
    const declare = (data: LedgerData, key: string, now: number): LedgerData => {
      const tokens = ownLimit(key)
      const batches = ownBatches(key)
      if (holdMs === undefined || (tokens === undefined && batches === undefined)) return data
      const others = (data.configured ?? []).filter((c) => !(c.key === key && c.run === runId))
      const mine: Configured = { key, run: runId, ...(tokens === undefined ? {} : { tokens }), ...(batches === undefined ? {} : { batches }), expires: now + holdMs }
      return { ...data, configured: [...others, mine] }
    }

    const isOf = (e: Entry, shard: { readonly id: string }) => e.run === runId && e.shard === shard.id
    const entryOf = (shard: { readonly id: string; readonly key: string; readonly tokens: number }, at: number, expires: number | undefined): Entry =>
      ({ key: shard.key, run: runId, shard: shard.id, tokens: shard.tokens, pid: process.pid, host, at, ...(expires === undefined ? {} : { expires }) })
    const tryTake = (shard: { readonly id: string; readonly key: string; readonly tokens: number }, force: boolean) =>
      store.update((before): readonly [number | undefined, LedgerData] => {
        const now = Date.now()
        const data = declare(before, shard.key, now)
        const mine = data.entries.filter((e) => !isOf(e, shard))
        const others = inFlight({ ...data, entries: mine }, shard.key)
        // Taken by an earlier step of this shard (a cluster's, whose batch may exist): its own still.
        const taken = data.entries.some((e) => isOf(e, shard))
        if (!force && !taken) {
          const since = data.waiting.find((e) => isOf(e, shard))?.at ?? now
          // In a cluster the line is the ledger's: a shard waiting longer for the key goes first.
          const ahead = holdMs !== undefined && data.waiting.some((w) => w.key === shard.key && !isOf(w, shard) && w.at < since)
          const cap = batchesIn(data, shard.key)
          const full = cap !== undefined && mine.filter((e) => e.key === shard.key).length >= cap
          if (ahead || full || !EnqueuedTokens.fits(others, shard.tokens, limitIn(data, shard.key))) {
            if (holdMs === undefined) return [undefined, before]
            const waiting = [...data.waiting.filter((e) => !isOf(e, shard)), entryOf(shard, since, now + waitMs)]
            return [undefined, { ...data, waiting }]
          }
        }
        const entry = entryOf(shard, now, holdMs === undefined ? undefined : now + holdMs)
        return [others, { ...data, entries: [...mine, entry], waiting: data.waiting.filter((e) => !isOf(e, shard)) }]
      })

    const give = (shard: { readonly id: string }) =>
      store.update((data) => [undefined, { ...data, entries: data.entries.filter((e) => !isOf(e, shard)), waiting: data.waiting.filter((e) => !isOf(e, shard)) }] as const).pipe(
        Effect.zipRight(signal)
      )

    const acquire = (shard: { readonly id: string; readonly key: string; readonly tokens: number; readonly wait: boolean }): Effect.Effect<number, NoHeadroom> =>
      Effect.gen(function* () {
        if (!shard.wait) return (yield* tryTake(shard, true))!
        if (leases !== undefined) {
          const others = yield* tryTake(shard, false)
          return others === undefined ? yield* new NoHeadroom({ key: shard.key, shard: shard.id }) : others
        }
        let waiters = queue.get(shard.key)
        if (waiters === undefined) queue.set(shard.key, (waiters = []))
        const line = waiters
        line.push(shard.id)
        yield* store.update((data) => [undefined, { ...data, waiting: [...data.waiting.filter((e) => !isOf(e, shard)), entryOf(shard, Date.now(), undefined)] }] as const)
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
          // In a cluster a batch still enqueued keeps its tokens past the step, under its lease.
          () => (leases !== undefined && shard.keep?.() === true ? Effect.void : give(shard))
        ),
      release: (id) => give({ id }),
      finished: () =>
        leases === undefined
          ? Effect.void
          : store.update((data) => [undefined, { ...data, configured: (data.configured ?? []).filter((c) => c.run !== runId) }] as const),
      learn: (key, tokens) =>
        store.update((data) => {
          const known = data.limits[key]?.tokens
          if (known !== undefined && known <= tokens) return [undefined, data] as const
          return [undefined, { ...data, limits: { ...data.limits, [key]: { tokens, run: runId, at: Date.now() } } }] as const
        }).pipe(Effect.zipRight(signal)),
      limitOf: (key) =>
        store.update((before) => {
          const data = declare(before, key, Date.now())
          return [limitIn(data, key), data] as const
        }),
      waiting: () => [...queue.values()].reduce((a, w) => a + w.length, 0)
    }
  })
