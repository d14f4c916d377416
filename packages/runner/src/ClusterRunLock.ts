/**
 * The run's lock in the cluster's database, so that a run directory's lock left by a worker of
 * *another host* that died in the middle of a step is taken over (issue 17) — which the lock
 * file alone cannot do: from here nothing tells whether a process on another host still runs.
 *
 * **The rule.** A step of a distributed run first takes a PostgreSQL *session* advisory lock
 * keyed by the run id (`hold`), on a connection of its own that it keeps for the whole step;
 * then the run directory's lock (and its sinks' locks), whose records it marks with the run id
 * and the database's identity (LockFile.ts, `cluster`). A record of another host with that
 * mark is then taken over: it was written by a step that held the advisory lock, and this one
 * could take it only after that step's session ended. Any other record is judged as before: a
 * lock of a `sluice` outside the cluster (a user's `retry` or `cancel`), or of a worker of an
 * older version (no mark), is respected, and a step waits for it (or for `--break-lock`).
 *
 * **A session can end while its worker still runs** (a network partition that the server
 * detects first, a restarted database, an administrator's `pg_terminate_backend`). So the
 * session's end must stop the step too: a watchdog asks the server every `pingEvery` whether
 * this session still holds the lock, and fails the step (interrupting it) when the answer is no,
 * an error, or later than `pingTimeout`; and a step that finds a marked record to take over does
 * so only `grace` after it took the advisory lock (its own clock), `grace` being longer than the
 * old step's watchdog needs to notice (`pingEvery` + `pingTimeout`, 3/7 of it) and to stop. That
 * is a lease's assumption — a worker is not paused (a frozen VM, a stopped process) for about
 * `grace` or longer — the one @effect/cluster makes of its own shard locks, and `grace` is the
 * worker's `--lock-expiration`. The session asks the server to probe
 * its connection (TCP keepalives) so that a partitioned worker's session, and with it the lock,
 * ends within about 20 s rather than the operating system's two hours.
 *
 * **Keys.** The two-integer form of the advisory lock (`objsubid` 2 in `pg_locks`) never meets
 * the cluster's own shard locks (one bigint each); the run id is hashed to 31 bits, so two runs
 * may share a key: their steps then take turns, which costs time, never safety (a mark names
 * its run, and only the holder of a run's key takes a record of that run over).
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Clock, Context, Duration, Effect, Layer, Option, type Redacted, Schedule, Schema, type Scope } from "effect"
import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import { hostname } from "node:os"
import * as LockFile from "./internal/LockFile.js"

/** Where the run locks live and their timing: a worker's, one for all its steps. */
export class Settings extends Context.Tag("@sluice/runner/ClusterRunLock/Settings")<Settings, {
  readonly databaseUrl: Redacted.Redacted
  /** How long a step waits, after taking the advisory lock, before taking a marked record over. */
  readonly grace: Duration.Duration
  /** How often the watchdog asks. */
  readonly pingEvery: Duration.Duration
  /** How long its answer may take. */
  readonly pingTimeout: Duration.Duration
}>() {
  /** The timing from a worker's `--lock-expiration`: asked 7 times in it, an answer within 2/7 of it. */
  static readonly layer = (databaseUrl: Redacted.Redacted, lockExpiration: Duration.Duration) => {
    const ms = Duration.toMillis(lockExpiration)
    return Layer.succeed(Settings, { databaseUrl, grace: lockExpiration, pingEvery: Duration.millis(ms / 7), pingTimeout: Duration.millis((2 * ms) / 7) })
  }
}

/** The step's database session no longer holds the run's lock: the step is stopped. */
export class RunLockLost extends Schema.TaggedError<RunLockLost>()("RunLockLost", {
  runId: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `run ${this.runId}: the database session holding the run's lock ended (${this.description}); the step was stopped`
  }
}

/** "sluc": the class of sluice's run locks among advisory locks of the two-integer form. */
const lockClass = 0x736c7563

/** The advisory lock's two keys for a run id. */
export const keyOf = (runId: string): { readonly classid: number; readonly objid: number } => ({
  classid: lockClass,
  objid: createHash("sha256").update(runId).digest().readUInt32BE(0) & 0x7fffffff
})

/** The database's identity: its cluster's system identifier (chosen at initdb) and its name, not its address. */
export const identityQuery = "SELECT system_identifier::text || '/' || current_database() AS id FROM pg_control_system()"

export interface Held {
  /** What the step's lock records carry; none when the database would not say who it is (then nothing is taken over). */
  readonly mark: LockFile.ClusterMark | undefined
  /** Waits out the grace when one of these lock files holds a marked record of another host to take over. */
  readonly settle: (lockPaths: ReadonlyArray<string>) => Effect.Effect<void>
  /** Runs `effect` while the session holds the lock; fails with RunLockLost (interrupting it) once it does not. */
  readonly guard: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | RunLockLost, R>
}

/** The other hosts' marked records among these lock files (read now; gone or unreadable ones are not). */
const toTakeOver = (lockPaths: ReadonlyArray<string>, mark: LockFile.ClusterMark) =>
  lockPaths.flatMap((path) => {
    let text: string
    try {
      text = readFileSync(path, "utf8")
    } catch {
      return []
    }
    const owner = LockFile.parse(text)
    return owner !== undefined && owner.host !== hostname() && LockFile.sameMark(owner.cluster, mark) ? [{ path, owner }] : []
  })

/** Said once per worker: the database keeps its identity to itself. */
let warnedIdentity = false

/** How a step's session names itself in `pg_stat_activity` (at most 63 bytes are kept). */
const sessionName = (): string => `sluice step ${process.pid}@${hostname()}`.slice(0, 63)

/**
 * Takes the run's advisory lock for the enclosing scope, on a connection of its own, waiting
 * while another session holds it (`onWait` is told who, when it is not this process: a worker's
 * own steps of one run take turns on it all the time). The lock goes with the connection when
 * the scope closes (or with the session, if the worker dies).
 */
export const hold = (runId: string, onWait: (holder: string) => Effect.Effect<void>): Effect.Effect<Held, SqlError, Scope.Scope | Settings> =>
  Effect.gen(function* () {
    const settings = yield* Settings
    const self = sessionName()
    const client = Context.get(
      // Two connections at most: the step's, and one to cancel a query of it that is interrupted
      // (@effect/sql-pg cancels through the pool: with one connection, reserved, that would wait).
      yield* Layer.build(PgClient.layer({ url: settings.databaseUrl, maxConnections: 2, applicationName: self })),
      PgClient.PgClient
    )
    const conn = yield* client.reserve
    // The server probes the connection when it falls silent, so a partitioned worker's session ends in ~20 s.
    for (const setting of ["tcp_keepalives_idle = 5", "tcp_keepalives_interval = 5", "tcp_keepalives_count = 3", "tcp_user_timeout = 20000"]) {
      yield* conn.executeRaw(`SET ${setting}`, []).pipe(Effect.ignore)
    }
    const { classid, objid } = keyOf(runId)
    const take = conn.executeValues(`SELECT pg_try_advisory_lock(${classid}, ${objid})`, [])
    const holder = conn.executeValues(
      `SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid ` +
        `WHERE l.locktype = 'advisory' AND l.granted AND l.classid = ${classid} AND l.objid = ${objid} AND l.objsubid = 2`,
      []
    ).pipe(Effect.map((rows) => (typeof rows[0]?.[0] === "string" && rows[0][0] !== "" ? rows[0][0] : "another session")), Effect.orElseSucceed(() => "another session"))
    let told = self
    yield* take.pipe(
      Effect.map((rows) => rows[0]?.[0] === true),
      Effect.tap((got) =>
        got ? Effect.void : Effect.flatMap(holder, (name) => (name === told ? Effect.void : Effect.zipRight(Effect.sync(() => (told = name)), onWait(name))))
      ),
      Effect.repeat({ schedule: Schedule.spaced("200 millis").pipe(Schedule.jittered), until: (got) => got })
    )
    const heldSince = yield* Clock.currentTimeMillis
    const identity = yield* conn.executeValues(identityQuery, []).pipe(Effect.option)
    const id = Option.flatMap(identity, (rows) => Option.fromNullable(rows[0]?.[0])).pipe(Option.filter((v): v is string => typeof v === "string"))
    if (Option.isNone(id) && !warnedIdentity) {
      warnedIdentity = true
      yield* Effect.logWarning(`the database does not say its identity (pg_control_system()); run locks left by dead workers of other hosts are not taken over (they wait for --break-lock)`)
    }
    const mark = Option.map(id, (database): LockFile.ClusterMark => ({ run: runId, database })).pipe(Option.getOrUndefined)

    const stillHeld = conn.executeValues(
      `SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() AND classid = ${classid} AND objid = ${objid} AND objsubid = 2`,
      []
    ).pipe(
      // A query that does not answer is given up at once, not once its cancellation is through (a partition).
      Effect.disconnect,
      Effect.timeoutFail({ duration: settings.pingTimeout, onTimeout: () => `no answer within ${Duration.format(settings.pingTimeout)}` }),
      Effect.mapError((e) => (typeof e === "string" ? e : e.message)),
      Effect.flatMap((rows) => (rows[0]?.[0] === 1 ? Effect.void : Effect.fail("the session no longer holds it")))
    )
    const watchdog = Effect.sleep(settings.pingEvery).pipe(
      Effect.zipRight(stillHeld),
      Effect.forever,
      Effect.catchAll((description) => Effect.fail(new RunLockLost({ runId, description })))
    )

    return {
      mark,
      settle: (lockPaths) =>
        Effect.gen(function* () {
          if (mark === undefined) return
          const found = toTakeOver(lockPaths, mark)
          if (found.length === 0) return
          const left = Duration.toMillis(settings.grace) - ((yield* Clock.currentTimeMillis) - heldSince)
          if (left <= 0) return
          const { owner, path } = found[0]!
          yield* Effect.logInfo(
            `run ${runId}: the lock ${path} names process ${owner.pid} on host ${owner.host}, a step of this run whose database session has ended; ` +
              `taken over in ${Duration.format(Duration.millis(left))}, once that step has surely stopped`
          )
          yield* Effect.sleep(Duration.millis(left))
        }),
      guard: (effect) => Effect.raceFirst(effect, watchdog)
    } satisfies Held
  })
