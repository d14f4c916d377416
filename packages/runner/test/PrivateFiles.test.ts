/**
 * Files as private as the data (internal/PrivateFiles.ts): what sluice creates in a run
 * directory and the response cache is 0700/0600 whatever the umask, and the directory is
 * fsynced after the manifest's rename and after the journal's creation — seen through a
 * FileSystem that records every open, fsync and rename.
 */
import { FileSystem, Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { mkdtempSync, readdirSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Journal from "../src/Journal.js"
import * as LineFile from "../src/internal/LineFile.js"
import * as ResponseCache from "../src/ResponseCache.js"
import * as RunDir from "../src/RunDir.js"

const manifest = (runId: string): RunDir.Manifest => ({
  version: 1,
  runId,
  pipeline: "p",
  fingerprint: "f",
  pipelineFile: null,
  stages: [],
  providers: {},
  sink: null,
  createdAt: "2020-01-01T00:00:00.000Z"
})

/** The Node FileSystem, recording opens, fsyncs (by path) and renames in `log`. */
const recording = (log: Array<string>) =>
  Layer.effect(
    FileSystem.FileSystem,
    Effect.map(FileSystem.FileSystem, (fs): FileSystem.FileSystem => ({
      ...fs,
      open: (path, options) =>
        fs.open(path, options).pipe(
          Effect.map((file) => {
            log.push(`open ${path}`)
            const spied = Object.create(file) as FileSystem.File
            Object.defineProperty(spied, "sync", { get: () => Effect.zipRight(file.sync, Effect.sync(() => void log.push(`fsync ${path}`))) })
            return spied
          })
        ),
      rename: (from, to) => Effect.zipRight(fs.rename(from, to), Effect.sync(() => void log.push(`rename ${from} -> ${to}`)))
    }))
  ).pipe(Layer.provide(NodeContext.layer))

const withUmask = <A>(mask: number, f: () => Promise<A>): Promise<A> => {
  const before = process.umask(mask)
  return f().finally(() => process.umask(before))
}

const mode = (path: string): string => (statSync(path).mode & 0o777).toString(8)

describe("directory fsync", () => {
  it.effect("writeManifest fsyncs the run directory after renaming the manifest into place", () =>
    Effect.gen(function* () {
      const log: Array<string> = []
      const root = join(mkdtempSync(join(tmpdir(), "sluice-private-")), "run")
      const paths = RunDir.paths(root, yield* Path.Path)
      yield* RunDir.writeManifest(paths, manifest("r1")).pipe(Effect.provide(recording(log)))
      const rename = log.indexOf(`rename ${paths.manifest}.tmp -> ${paths.manifest}`)
      expect(rename, log.join("\n")).toBeGreaterThan(log.indexOf(`fsync ${paths.manifest}.tmp`))
      expect(log.slice(rename + 1)).toEqual([`open ${root}`, `fsync ${root}`])
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped("Journal.open fsyncs the directory of a journal it creates, not of one that exists", () =>
    Effect.gen(function* () {
      const dir = mkdtempSync(join(tmpdir(), "sluice-private-"))
      const path = join(dir, "journal.jsonl")
      const created: Array<string> = []
      yield* Journal.open(path).pipe(Effect.provide(recording(created)))
      expect(created).toEqual([`open ${path}`, `open ${dir}`, `fsync ${dir}`])
      const reopened: Array<string> = []
      yield* Journal.open(path).pipe(Effect.provide(recording(reopened)))
      expect(reopened.filter((l) => l.endsWith(` ${dir}`))).toEqual([])
    }))
})

describe("modes, whatever the umask", () => {
  it("run directory files and directories are 0600 and 0700 under umask 000", () =>
    withUmask(0, async () => {
      const root = join(mkdtempSync(join(tmpdir(), "sluice-private-")), "runs", "r")
      await Effect.runPromise(
        Effect.gen(function* () {
          const paths = RunDir.paths(root, yield* Path.Path)
          yield* RunDir.writeManifest(paths, manifest("r2"))
          yield* Effect.scoped(Journal.open(paths.journal))
          yield* Effect.scoped(Effect.flatMap(LineFile.open(paths.shardFile("s-00001"), 0), (f) => Effect.zipRight(f.line("{}"), f.sync)))
        }).pipe(Effect.provide(NodeContext.layer))
      )
      expect(mode(join(root, ".."))).toBe("700")
      expect(mode(root)).toBe("700")
      expect(mode(join(root, "shards"))).toBe("700")
      for (const file of ["manifest.json", "journal.jsonl", "shards/s-00001.jsonl"]) expect([file, mode(join(root, file))]).toEqual([file, "600"])
    }))

  it("response cache directories and segments are 0700 and 0600 under umask 000", () =>
    withUmask(0, async () => {
      const dir = join(mkdtempSync(join(tmpdir(), "sluice-private-")), "cache")
      await Effect.runPromise(
        Effect.scoped(
          Effect.gen(function* () {
            const cache = yield* ResponseCache.open(dir)
            cache.put(ResponseCache.key("ns", { a: 1 }), { text: "hi", finishReason: "stop", usage: null, raw: {} })
            yield* cache.flush
          })
        )
      )
      expect(mode(dir)).toBe("700")
      expect(mode(join(dir, "v1"))).toBe("700")
      const segments = readdirSync(join(dir, "v1"))
      expect(segments).toHaveLength(2)
      for (const name of segments) expect([name, mode(join(dir, "v1", name))]).toEqual([name, "600"])
    }))
})
