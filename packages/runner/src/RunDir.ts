/**
 * The run directory: one per run, everything needed to resume, and no secrets.
 *
 *   manifest.json     pipeline name and fingerprint, the pipeline file and its SHA-256, each
 *                     stage's provider identity (no keys), the directory the run was started in,
 *                     the settings a resume keeps (`--mode`, `--online-budget`, `--online-below`,
 *                     `--budget`, `--keep-provider-files`)
 *   run.lock          the process working on the run (internal/LockFile.ts)
 *   journal.jsonl     append-only events (Journal.ts), unless the manifest puts the journal
 *                     in a cluster's database (JournalStore.ts)
 *   shards/           request files exactly as uploaded, with a row sidecar per shard; an
 *                     online shard's answers in `<shard>.online.jsonl`; a shard's results lines
 *                     in `<shard>.collecting.jsonl` while it is read (Collector.ts)
 *   results.jsonl     every result line as collected, raw response kept
 *   failures.jsonl    rows that ended failed, with class and message
 *   outputs.jsonl     the outputs, when the pipeline has no sink of its own
 *   stages/           a later stage's inbox: the rows its upstream stage passed on
 *   keys/             while a run's keys are checked for duplicates: a key record per row
 *                     and shard, the sort's runs, rewritten shard files (see KeyCheck.ts)
 *   duplicate-keys.jsonl  the rows whose conflicting keys refused the plan (onInvalid "fail")
 *   previous/<n>/     the journal, shards and outputs of generation n, before a changed
 *                     pipeline was accepted (`--allow-changed`)
 *
 * Everything in it is created private (internal/PrivateFiles.ts): 0700 directories, 0600 files.
 *
 * A cluster run whose manifest says `"files": "postgres"` (every run started with `--cluster`
 * since its files moved there) has all of it but `run.lock` held by its cluster's database
 * (RunFiles.ts); each worker works on a copy of its own under its `--state-dir`, and the
 * directory `run --cluster` or a reader was given is a copy too, pulled before it is read
 * (beside `.sluice-mirror.json`, the copy's record of what it holds). Without that field the
 * directory itself is the run's, on a path every worker shares.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { ProviderIdentity } from "@sluice/providers"
import { Effect, Schema } from "effect"
import * as PrivateFiles from "./internal/PrivateFiles.js"
import { Kept } from "./KeptSettings.js"

/** A run moved between provider identities (`--rebind-provider`). */
export const Rebind = Schema.Struct({
  at: Schema.String,
  stage: Schema.String,
  from: ProviderIdentity.ProviderIdentity,
  to: ProviderIdentity.ProviderIdentity
})
export type Rebind = typeof Rebind.Type

export const Manifest = Schema.Struct({
  version: Schema.Literal(1),
  runId: Schema.String,
  pipeline: Schema.String,
  fingerprint: Schema.String,
  /**
   * The pipeline file, so `resume` needs only the run directory: absolute as sluice records
   * it; a relative one resolves against the run directory (never the working directory).
   */
  pipelineFile: Schema.NullOr(Schema.String),
  /**
   * The SHA-256 (hex) of the pipeline file's bytes as the run last loaded it: `resume` and
   * `retry` load only that file (absent in manifests before it was recorded).
   */
  pipelineSha256: Schema.optional(Schema.String),
  stages: Schema.Array(
    Schema.Struct({
      name: Schema.String,
      provider: Schema.String,
      model: Schema.String,
      /** The provider identity the stage's batches and answers belong to (absent in manifests before binding). */
      binding: Schema.optional(ProviderIdentity.ProviderIdentity)
    })
  ),
  /** Provider endpoints (base URLs), never keys. */
  providers: Schema.Record({ key: Schema.String, value: Schema.Struct({ baseUrl: Schema.String }) }),
  sink: Schema.NullOr(Schema.String),
  /** Shard limits the run was planned with, so retries and resumes pack the same way. */
  shards: Schema.optional(Schema.Struct({ maxRequests: Schema.Number, maxBytes: Schema.Number })),
  createdAt: Schema.String,
  /** Raised each time a changed pipeline is accepted; earlier generations are in `previous/<n>/`. */
  generation: Schema.optional(Schema.Number),
  /** The run id of the generation whose answers this one carries over, by custom_id. */
  carriedFrom: Schema.optional(Schema.String),
  /**
   * The directory the run was started in: relative paths of the pipeline (sources, sinks,
   * files) and the default response cache resolve against it (absent in older manifests).
   */
  baseDir: Schema.optional(Schema.String),
  /** Moves of the run between provider identities, oldest first. */
  rebinds: Schema.optional(Schema.Array(Rebind)),
  /**
   * The run's `--mode`, `--online-budget`, `--online-below`, `--budget` and
   * `--keep-provider-files` as last given (KeptSettings.ts):
   * `resume` and `retry` use them unless given again (absent: none given, or an older run).
   */
  settings: Schema.optional(Kept),
  /**
   * Set when a distributed run's step wrote the manifest (Cluster.ts): the identity of the
   * cluster's database (its system identifier and name, never its address), so that `cancel`
   * knows to go through the cluster.
   */
  cluster: Schema.optional(Schema.Struct({ database: Schema.String })),
  /**
   * Where the run's journal is (JournalStore.ts), fixed when the run is created: "postgres", in
   * its cluster's database (a run started on a cluster); absent or "file", `journal.jsonl` here.
   */
  journal: Schema.optional(Schema.Literal("file", "postgres")),
  /**
   * Where the run directory's files are held (RunFiles.ts), fixed when the run is created:
   * "postgres", in its cluster's database, every worker and reader working on a local copy
   * (a run started on a cluster by this version); absent, here, on a path its workers share.
   */
  files: Schema.optional(Schema.Literal("postgres"))
})
export type Manifest = typeof Manifest.Type

export class RunDirError extends Schema.TaggedError<RunDirError>()("RunDirError", {
  path: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `run directory ${this.path}: ${this.description}`
  }
}

export class BaseDirMismatch extends Schema.TaggedError<BaseDirMismatch>()("BaseDirMismatch", {
  runDir: Schema.String,
  /** Where the run was started (the manifest's `baseDir`). */
  baseDir: Schema.String,
  /** Where this process is. */
  cwd: Schema.String
}) {
  override get message(): string {
    return (
      `run ${this.runDir} was started in ${this.baseDir}: relative paths of its pipeline (sources, sinks, files) ` +
      `and its default response cache resolve against that directory, not against ${this.cwd}. ` +
      `Continue it with \`sluice resume ${this.runDir}\` (from any directory), or from ${this.baseDir}`
    )
  }
}

/**
 * Checks that this process stands in the directory the run was started in (recording it in
 * a manifest that predates `baseDir`). Relative paths resolve against `process.cwd()`.
 */
export const checkBaseDir = (p: RunPaths, manifest: Manifest) =>
  Effect.gen(function* () {
    const cwd = process.cwd()
    if (manifest.baseDir === cwd) return manifest
    if (manifest.baseDir !== undefined) return yield* new BaseDirMismatch({ runDir: p.root, baseDir: manifest.baseDir, cwd })
    const next = { ...manifest, baseDir: cwd }
    yield* writeManifest(p, next)
    yield* Effect.logInfo(`run ${p.root} predates recorded base directories; recorded ${cwd}, where relative paths of its pipeline resolve from now on`)
    return next
  })

/**
 * Changes the process's directory to the one the run was started in, so the pipeline module
 * and its relative paths see what they saw then (the CLI's `resume`, `retry`, `cancel`).
 * Resolve every path given on the command line before.
 */
export const enterBaseDir = (p: RunPaths, manifest: Manifest) =>
  Effect.gen(function* () {
    if (manifest.baseDir === undefined) return
    const fs = yield* FileSystem.FileSystem
    const info = yield* fs.stat(manifest.baseDir).pipe(Effect.option)
    if (info._tag === "None" || info.value.type !== "Directory") {
      return yield* new RunDirError({
        path: p.root,
        description:
          `the run was started in ${manifest.baseDir}, which no longer exists; relative paths of its pipeline resolve ` +
          `against that directory. Restore it, or if the project moved, set "baseDir" in ${p.manifest} to where it is now`
      })
    }
    yield* Effect.try({
      try: () => process.chdir(manifest.baseDir!),
      catch: (e) => new RunDirError({ path: p.root, description: `cannot change to ${manifest.baseDir}, where the run was started: ${e instanceof Error ? e.message : String(e)}` })
    })
  })

/** A directory given as a run's that holds no run. */
export class NotARunDirectory extends Schema.TaggedError<NotARunDirectory>()("NotARunDirectory", {
  path: Schema.String
}) {
  override get message(): string {
    return `${this.path} is not a sluice run directory (no manifest.json)`
  }
}

export interface RunPaths {
  readonly root: string
  readonly manifest: string
  readonly lock: string
  readonly journal: string
  readonly shards: string
  readonly results: string
  readonly failures: string
  /** The outputs of a pipeline that has no sink of its own. */
  readonly outputs: string
  readonly shardFile: (shard: string) => string
  readonly rowsFile: (shard: string) => string
  /** The answers of a shard served from the response cache. */
  readonly cachedFile: (shard: string) => string
  /** An online shard's answers, one classified result per line, each durable before its request's slot is freed. */
  readonly onlineFile: (shard: string) => string
  /** A collection's results.jsonl lines, written while it reads its results, copied once it holds the outputs. */
  readonly collectingFile: (shard: string) => string
  readonly stages: string
  readonly inbox: (stage: string) => string
  /** The duplicate-key check's files, deleted once it is done. */
  readonly keys: string
  /** A first-stage shard's key records (one per row of its sidecar, in order). */
  readonly keysFile: (shard: string) => string
  /** The rows whose conflicting keys refused the plan, one JSON line each. */
  readonly duplicateKeys: string
}

export const paths = (root: string, path: Path.Path): RunPaths => ({
  root,
  manifest: path.join(root, "manifest.json"),
  lock: path.join(root, "run.lock"),
  journal: path.join(root, "journal.jsonl"),
  shards: path.join(root, "shards"),
  results: path.join(root, "results.jsonl"),
  failures: path.join(root, "failures.jsonl"),
  outputs: path.join(root, "outputs.jsonl"),
  shardFile: (shard) => path.join(root, "shards", `${shard}.jsonl`),
  rowsFile: (shard) => path.join(root, "shards", `${shard}.rows.jsonl`),
  cachedFile: (shard) => path.join(root, "shards", `${shard}.cached.jsonl`),
  onlineFile: (shard) => path.join(root, "shards", `${shard}.online.jsonl`),
  collectingFile: (shard) => path.join(root, "shards", `${shard}.collecting.jsonl`),
  stages: path.join(root, "stages"),
  inbox: (stage) => path.join(root, "stages", `${stage}.jsonl`),
  keys: path.join(root, "keys"),
  keysFile: (shard) => path.join(root, "keys", `${shard}.keys`),
  duplicateKeys: path.join(root, "duplicate-keys.jsonl")
})

const decodeManifest = Schema.decodeUnknown(Schema.parseJson(Manifest))

export const readManifest = (p: RunPaths) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(p.manifest).pipe(
      Effect.catchIf(
        (e) => e._tag === "SystemError" && e.reason === "NotFound",
        () => new NotARunDirectory({ path: p.root })
      )
    )
    return yield* decodeManifest(text)
  }).pipe(
    Effect.catchIf(
      (e) => e._tag !== "NotARunDirectory",
      (e) => new RunDirError({ path: p.root, description: `cannot read manifest.json: ${e.message.split("\n")[0]}` })
    )
  )

/**
 * Writes the manifest atomically: a temp file, fsynced, renamed over the target, and the
 * directory fsynced so the rename survives a power cut.
 */
export const writeManifest = (p: RunPaths, manifest: Manifest) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    yield* PrivateFiles.makeDirectory(p.shards)
    const tmp = `${p.manifest}.tmp`
    yield* Effect.scoped(
      Effect.gen(function* () {
        const file = yield* PrivateFiles.open(tmp, "w")
        yield* file.writeAll(new TextEncoder().encode(JSON.stringify(manifest, null, 2) + "\n"))
        yield* file.sync
      })
    )
    yield* fs.rename(tmp, p.manifest)
    yield* PrivateFiles.syncDirectory(p.root)
  }).pipe(Effect.mapError((e) => new RunDirError({ path: p.root, description: `cannot write manifest: ${e.message}` })))

export const exists = (p: RunPaths) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.exists(p.manifest)).pipe(Effect.orElseSucceed(() => false))

/**
 * The run directories directly under `root` (those with a manifest or a journal), as absolute paths; none
 * when `root` does not exist. `sluice webhook` and `sluice gc` look at `.sluice/runs` this way.
 */
export const under = (root: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const base = path.resolve(root)
    const names = yield* fs.readDirectory(base).pipe(Effect.orElseSucceed(() => [] as Array<string>))
    const dirs: Array<string> = []
    for (const name of names.sort()) {
      const dir = path.join(base, name)
      // A run whose journal is in a cluster's database has no journal.jsonl.
      const isRun = (name: string) => fs.exists(path.join(dir, name)).pipe(Effect.orElseSucceed(() => false))
      if ((yield* isRun("journal.jsonl")) || (yield* isRun("manifest.json"))) dirs.push(dir)
    }
    return dirs
  })
