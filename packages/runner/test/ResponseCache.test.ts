import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { spawn } from "node:child_process"
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import * as ResponseCache from "../src/ResponseCache.js"
import type { CachedAnswer } from "../src/ResponseCache.js"

const tmp = () => mkdtempSync(join(tmpdir(), "sluice-cache-"))

const answer = (text: string, raw: unknown = { id: `resp-${text}`, body: { text } }): CachedAnswer => ({
  text,
  finishReason: "stop",
  usage: { inputTokens: 10, outputTokens: 3, cachedInputTokens: 0 },
  raw
})

const k = (n: number | string) => ResponseCache.key("openai https://api.example", { n })

/** Segment files of a cache directory, by extension. */
const segments = (dir: string, ext: "idx" | "jsonl") =>
  readdirSync(join(dir, "v1"))
    .filter((n) => n.endsWith(`.${ext}`))
    .sort()
    .map((n) => join(dir, "v1", n))

/** Opens the cache in its own scope, runs `f`, closes the scope (which flushes). */
const withCache = <A, E>(dir: string, f: (cache: ResponseCache.ResponseCache) => Effect.Effect<A, E>) =>
  Effect.scoped(Effect.flatMap(ResponseCache.open(dir), f))

const parsed = (cache: ResponseCache.ResponseCache, key: string): unknown => {
  const text = cache.read(key)
  return text === undefined ? undefined : JSON.parse(text)
}

describe("ResponseCache", () => {
  it.effect("round trip: put, flush, reopen, read", () =>
    Effect.gen(function* () {
      const dir = tmp()
      yield* withCache(dir, (cache) =>
        Effect.gen(function* () {
          expect(cache.size()).toBe(0)
          for (let i = 0; i < 100; i++) cache.put(k(i), answer(`a${i}`))
          yield* cache.flush
          expect(cache.size()).toBe(100)
        })
      )
      yield* withCache(dir, (cache) =>
        Effect.sync(() => {
          expect(cache.size()).toBe(100)
          for (let i = 0; i < 100; i++) {
            expect(cache.has(k(i))).toBe(true)
            expect(parsed(cache, k(i))).toEqual(answer(`a${i}`))
          }
          expect(cache.has(k("other"))).toBe(false)
          expect(cache.read(k("other"))).toBeUndefined()
          // The stored text is the answer object only: a result line is made by adding fields.
          expect(cache.read(k(0))!.startsWith('{"text":')).toBe(true)
          const line = `{"_tag":"Succeeded","customId":"label-r0-abc",${cache.read(k(0))!.slice(1)}`
          expect(JSON.parse(line)).toEqual({ _tag: "Succeeded", customId: "label-r0-abc", ...answer("a0") })
        })
      )
      expect(segments(dir, "idx").length).toBe(1)
      expect(segments(dir, "jsonl").length).toBe(1)
      const idxLines = readFileSync(segments(dir, "idx")[0]!, "utf8").trimEnd().split("\n")
      expect(idxLines.length).toBe(100)
      expect(idxLines[0]).toMatch(/^[0-9a-f]{64} 0 \d+$/)
    })
  )

  it.effect("answers put are visible before the flush, and the scope's close flushes them", () =>
    Effect.gen(function* () {
      const dir = tmp()
      yield* withCache(dir, (cache) =>
        Effect.sync(() => {
          expect(cache.put(k(1), answer("one"))).toBe(false)
          expect(cache.has(k(1))).toBe(true)
          expect(parsed(cache, k(1))).toEqual(answer("one"))
          expect(cache.size()).toBe(1)
        })
      )
      yield* withCache(dir, (cache) => Effect.sync(() => expect(parsed(cache, k(1))).toEqual(answer("one"))))
    })
  )

  it.effect("stores the answer and nothing else", () =>
    Effect.gen(function* () {
      const dir = tmp()
      const succeeded = { _tag: "Succeeded", customId: "label-r1-abc", ...answer("x"), usage: { inputTokens: 1, outputTokens: 2, cachedInputTokens: 0, extra: 9 } }
      yield* withCache(dir, (cache) => Effect.sync(() => cache.put(k(1), succeeded)))
      const data = readFileSync(segments(dir, "jsonl")[0]!, "utf8")
      expect(data).not.toContain("customId")
      expect(data).not.toContain("Succeeded")
      expect(data).not.toContain("extra")
      expect(Object.keys(JSON.parse(data))).toEqual(["text", "finishReason", "usage", "raw"])
    })
  )

  it.effect("put asks for a flush once about a megabyte is buffered", () =>
    Effect.gen(function* () {
      const dir = tmp()
      yield* withCache(dir, (cache) =>
        Effect.gen(function* () {
          const big = "y".repeat(100_000)
          let asked = -1
          for (let i = 0; i < 20 && asked < 0; i++) if (cache.put(k(i), answer(big, null))) asked = i
          expect(asked).toBe(10) // the 11th answer of 100 kB passes 1 MiB
          yield* cache.flush
          expect(cache.put(k("next"), answer("small"))).toBe(false)
        })
      )
    })
  )

  it.effect("a key already stored is not written twice", () =>
    Effect.gen(function* () {
      const dir = tmp()
      yield* withCache(dir, (cache) =>
        Effect.gen(function* () {
          cache.put(k(1), answer("first"))
          expect(cache.put(k(1), answer("second"))).toBe(false) // buffered
          yield* cache.flush
          expect(cache.put(k(1), answer("third"))).toBe(false) // flushed
          yield* cache.flush
          expect(cache.size()).toBe(1)
          expect(parsed(cache, k(1))).toEqual(answer("first"))
        })
      )
      const sizeBefore = statSync(segments(dir, "jsonl")[0]!).size
      yield* withCache(dir, (cache) =>
        Effect.gen(function* () {
          expect(cache.put(k(1), answer("fourth"))).toBe(false) // stored by an earlier open
          yield* cache.flush
        })
      )
      expect(segments(dir, "jsonl").length).toBe(1) // the second open had nothing to write
      expect(statSync(segments(dir, "jsonl")[0]!).size).toBe(sizeBefore)
      expect(readFileSync(segments(dir, "idx")[0]!, "utf8").trimEnd().split("\n").length).toBe(1)
    })
  )

  it.effect("two caches on one directory write concurrently; a third open sees both", () =>
    Effect.gen(function* () {
      const dir = tmp()
      const writer = (name: string) =>
        withCache(dir, (cache) =>
          Effect.gen(function* () {
            for (let round = 0; round < 5; round++) {
              for (let i = 0; i < 50; i++) cache.put(k(`${name}-${round}-${i}`), answer(`${name}${round}.${i}`, { pad: "z".repeat(500) }))
              cache.put(k(`shared-${round}`), answer(`shared${round}`))
              yield* cache.flush
              yield* Effect.yieldNow()
            }
          })
        )
      yield* Effect.all([writer("a"), writer("b")], { concurrency: 2 })
      expect(segments(dir, "idx").length).toBe(2)
      yield* withCache(dir, (cache) =>
        Effect.sync(() => {
          expect(cache.size()).toBe(2 * 5 * 50 + 5)
          for (const name of ["a", "b"]) {
            for (let round = 0; round < 5; round++) {
              for (let i = 0; i < 50; i++) {
                expect(parsed(cache, k(`${name}-${round}-${i}`))).toEqual(answer(`${name}${round}.${i}`, { pad: "z".repeat(500) }))
              }
            }
          }
          for (let round = 0; round < 5; round++) expect(parsed(cache, k(`shared-${round}`))).toEqual(answer(`shared${round}`))
        })
      )
    })
  )

  it.effect("reads stay correct across many segments (more than the open descriptors kept)", () =>
    Effect.gen(function* () {
      const dir = tmp()
      for (let s = 0; s < 70; s++) yield* withCache(dir, (cache) => Effect.sync(() => cache.put(k(s), answer(`s${s}`))))
      expect(segments(dir, "idx").length).toBe(70)
      yield* withCache(dir, (cache) =>
        Effect.sync(() => {
          for (let pass = 0; pass < 2; pass++) {
            for (let s = 0; s < 70; s++) expect(parsed(cache, k(s))).toEqual(answer(`s${s}`))
          }
        })
      )
    })
  )

  it.effect("a torn idx line and malformed lines are skipped", () =>
    Effect.gen(function* () {
      const dir = tmp()
      yield* withCache(dir, (cache) => Effect.sync(() => [1, 2, 3].forEach((i) => cache.put(k(i), answer(`t${i}`)))))
      const idx = segments(dir, "idx")[0]!
      const lines = readFileSync(idx, "utf8").trimEnd().split("\n")
      // A garbage line in the middle, an entry of a key that was never written, and a torn last line.
      writeFileSync(idx, [lines[0], "garbage", lines[1], `${k(99)} 0`, lines[2]].join("\n") + "\n" + `${k(4)} 12`)
      yield* withCache(dir, (cache) =>
        Effect.gen(function* () {
          expect(cache.size()).toBe(3)
          for (const i of [1, 2, 3]) expect(parsed(cache, k(i))).toEqual(answer(`t${i}`))
          expect(cache.has(k(4))).toBe(false)
          expect(cache.has(k(99))).toBe(false)
          // The cache keeps working: new answers go to a segment of their own.
          cache.put(k(4), answer("t4"))
          yield* cache.flush
        })
      )
      yield* withCache(dir, (cache) => Effect.sync(() => expect(parsed(cache, k(4))).toEqual(answer("t4"))))
    })
  )

  it.effect("entries past the end of a truncated data segment are skipped", () =>
    Effect.gen(function* () {
      const dir = tmp()
      yield* withCache(dir, (cache) => Effect.sync(() => [1, 2, 3].forEach((i) => cache.put(k(i), answer(`d${i}`)))))
      const data = segments(dir, "jsonl")[0]!
      const idxLines = readFileSync(segments(dir, "idx")[0]!, "utf8").trimEnd().split("\n")
      const third = Number(idxLines[2]!.split(" ")[1])
      truncateSync(data, third + 5) // the third answer is cut short
      yield* withCache(dir, (cache) =>
        Effect.sync(() => {
          expect(cache.size()).toBe(2)
          expect(parsed(cache, k(1))).toEqual(answer("d1"))
          expect(parsed(cache, k(2))).toEqual(answer("d2"))
          expect(cache.has(k(3))).toBe(false)
        })
      )
      // An emptied data segment takes all of its index with it.
      truncateSync(data, 0)
      yield* withCache(dir, (cache) => Effect.sync(() => expect(cache.size()).toBe(0)))
    })
  )

  it.effect("a missing directory is an empty cache, created by the first flush", () =>
    Effect.gen(function* () {
      const dir = join(tmp(), "nested", "cache")
      yield* withCache(dir, (cache) => Effect.sync(() => expect(cache.size()).toBe(0)))
      expect(() => readdirSync(dir)).toThrow() // opening alone writes nothing
      yield* withCache(dir, (cache) => Effect.sync(() => cache.put(k(1), answer("n"))))
      yield* withCache(dir, (cache) => Effect.sync(() => expect(parsed(cache, k(1))).toEqual(answer("n"))))
    })
  )

  it.effect("an unreadable cache directory is a CacheError naming the path", () =>
    Effect.gen(function* () {
      const dir = join(tmp(), "not-a-dir")
      writeFileSync(dir, "a file where the cache should be")
      const exit = yield* Effect.exit(Effect.scoped(ResponseCache.open(dir)))
      expect(Exit.isFailure(exit)).toBe(true)
      const error = yield* Effect.flip(Effect.scoped(ResponseCache.open(dir)))
      expect(error._tag).toBe("CacheError")
      expect(error.path).toContain(dir)
      expect(error.message).toContain(dir)
    })
  )

  it.effect("a flush that cannot write fails with CacheError and keeps the answers for the next one; a second failure gives up", () =>
    Effect.gen(function* () {
      const parent = tmp()
      const dir = join(parent, "cache")
      const scope = yield* Scope.make()
      const cache = yield* ResponseCache.open(dir).pipe(Scope.extend(scope))
      writeFileSync(dir, "blocks the directory") // the cache directory cannot be created
      cache.put(k(1), answer("kept"))
      const error = yield* Effect.flip(cache.flush)
      expect(error._tag).toBe("CacheError")
      expect(cache.has(k(1))).toBe(true)
      expect(parsed(cache, k(1))).toEqual(answer("kept"))
      // A second failure in a row: the cache gives up storing, rather than hold every answer.
      expect((yield* Effect.flip(cache.flush))._tag).toBe("CacheError")
      expect(cache.has(k(1))).toBe(false)
      expect(cache.put(k(2), answer("dropped"))).toBe(false)
      expect(cache.has(k(2))).toBe(false)
      yield* cache.flush // nothing left to write
      yield* Scope.close(scope, Exit.void)
    })
  )

  it.effect(
    "a writer killed with SIGKILL mid-writing leaves a cache that holds every flushed answer",
    () =>
      Effect.gen(function* () {
        const dir = tmp()
        const flushed = yield* Effect.promise(() => killedWriter(dir, 25))
        expect(flushed).toBeGreaterThanOrEqual(25)
        yield* withCache(dir, (cache) =>
          Effect.sync(() => {
            for (let b = 0; b <= flushed + 5; b++) {
              for (let j = 0; j < 20; j++) {
                const key = ResponseCache.key("ns", { b, j })
                if (b < flushed) expect(cache.has(key)).toBe(true)
                // Answers of the batch being written when the kill came may or may not be
                // there; any that is must be whole.
                if (cache.has(key)) expect(parsed(cache, key)).toEqual(childAnswer(b, j))
              }
            }
          })
        )
      }),
    60_000
  )

  it.effect("disabled stores nothing", () =>
    Effect.gen(function* () {
      const cache = ResponseCache.disabled
      expect(cache.put(k(1), answer("x"))).toBe(false)
      expect(cache.has(k(1))).toBe(false)
      expect(cache.read(k(1))).toBeUndefined()
      expect(cache.size()).toBe(0)
      yield* cache.flush
    })
  )

  it("key: equal for equal requests, different when any part differs", () => {
    const request = (over: Record<string, unknown> = {}) => ({
      _tag: "chat",
      model: "gpt-4o-mini",
      messages: [
        { role: "system", content: "You label reviews." },
        { role: "user", content: "great" }
      ],
      params: { temperature: 0 },
      output: { name: "Label", schema: { type: "object", properties: { s: { type: "string" } } } },
      ...over
    })
    const ns = "openai https://api.openai.com/v1"
    const base = ResponseCache.key(ns, request())
    expect(base).toMatch(/^[0-9a-f]{64}$/)
    expect(ResponseCache.key(ns, request())).toBe(base)
    const variants = [
      ResponseCache.key("anthropic https://api.anthropic.com", request()),
      ResponseCache.key(ns, request({ model: "gpt-4o" })),
      ResponseCache.key(ns, request({ params: { temperature: 0.5 } })),
      ResponseCache.key(ns, request({ params: { temperature: 0, max_tokens: 10 } })),
      ResponseCache.key(ns, request({ messages: [{ role: "system", content: "You label reviews." }, { role: "user", content: "great!" }] })),
      ResponseCache.key(ns, request({ messages: [{ role: "user", content: "great" }] })),
      ResponseCache.key(ns, request({ output: { name: "Label", schema: { type: "object", properties: { s: { type: "number" } } } } })),
      ResponseCache.key(ns, request({ output: undefined }))
    ]
    expect(new Set([base, ...variants]).size).toBe(variants.length + 1)
  })

  it.effect("has, read and put treat a string that is not a key as absent / a defect", () =>
    Effect.gen(function* () {
      const dir = tmp()
      yield* withCache(dir, (cache) =>
        Effect.sync(() => {
          expect(cache.has("nope")).toBe(false)
          expect(cache.read(k(1).toUpperCase())).toBeUndefined()
          expect(() => cache.put("nope", answer("x"))).toThrow(/not a cache key/)
        })
      )
    })
  )
})

// ---------------------------------------------------------------------------------------------
// The SIGKILL test's child: a real process writing batches of answers until it is killed
// ---------------------------------------------------------------------------------------------

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..")
const moduleUrl = pathToFileURL(resolve(dirname(fileURLToPath(import.meta.url)), "..", "src", "ResponseCache.ts")).href

const childAnswer = (b: number, j: number): CachedAnswer => ({
  text: `${b}-${j}`,
  finishReason: "stop",
  usage: { inputTokens: b, outputTokens: j, cachedInputTokens: 0 },
  raw: { b, j, pad: "p".repeat(3000 + j) }
})

/** Puts batch b, flushes, reports b on stdout, then buffers the next batch half before flushing. */
const childScript = `
import { Effect } from "effect"
import * as ResponseCache from ${JSON.stringify(moduleUrl)}
const answer = ${childAnswer.toString()}
await Effect.runPromise(Effect.scoped(Effect.gen(function* () {
  const cache = yield* ResponseCache.open(process.env.CACHE_DIR)
  for (let b = 0; ; b++) {
    for (let j = 0; j < 20; j++) {
      cache.put(ResponseCache.key("ns", { b, j }), answer(b, j))
      if (j === 10) yield* Effect.sleep(1)
    }
    yield* cache.flush
    process.stdout.write(b + "\\n")
  }
})))
`

/**
 * Runs the child until it has reported `atLeast` flushed batches, kills it with SIGKILL,
 * and returns the number of batches it reported flushed (0…n-1 are all durable).
 */
const killedWriter = (dir: string, atLeast: number): Promise<number> =>
  new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", childScript], {
      cwd: repoRoot,
      env: { ...process.env, CACHE_DIR: dir },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let reported = 0
    let stdout = ""
    let stderr = ""
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d
      const lines = stdout.split("\n")
      stdout = lines.pop()!
      reported += lines.length
      if (reported >= atLeast && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    })
    const timer = setTimeout(() => child.kill("SIGKILL"), 45_000)
    child.on("error", reject)
    child.on("exit", (code, signal) => {
      clearTimeout(timer)
      if (signal === "SIGKILL" && reported >= atLeast) resolvePromise(reported)
      else reject(new Error(`child ended with ${code ?? signal} after ${reported} batches: ${stderr}`))
    })
  })
