/**
 * A provider's answers are untrusted input, read within bounds: a result line over the cap
 * (made small here) is never held whole — its row fails (`result_too_large`) when its
 * custom_id is at its start, else it is skipped with a warning — and an error body or a JSON
 * answer is read up to its cap, then the connection is dropped: a fake provider on 127.0.0.1
 * counts the bytes it got to send before the socket closed: a few MiB of a 256 MiB body.
 */
import { assert, describe, it } from "@effect/vitest"
import type { BatchResult } from "@sluice/core"
import { Chunk, Effect, Exit, Logger, LogLevel, Redacted, Stream } from "effect"
import type { ServerResponse } from "node:http"
import type { BatchInfo, BatchProvider } from "../src/BatchProvider.js"
import * as AnthropicBatch from "../src/anthropic/AnthropicBatch.js"
import * as GeminiBatch from "../src/gemini/GeminiBatch.js"
import { LineSplitter, topLevelString } from "../src/internal/lines.js"
import * as OpenAiBatch from "../src/openai/OpenAiBatch.js"
import { clientOf, clients, json, providerFromEnv, testServer } from "./HttpTestServer.js"

const apiKey = Redacted.make("sk-bounds-test-0123456789")
const cap = 64 * 1024
/** A line 16 times over the cap (1 MiB): big enough to prove the cap, quick to send. */
const huge = "a".repeat(16 * cap)

const batch = (over: Partial<BatchInfo>): BatchInfo => ({
  id: "b1",
  status: "completed",
  rawStatus: "completed",
  counts: { total: 3, succeeded: 3, failed: 0 },
  inputRef: null,
  outputFileId: null,
  errorFileId: null,
  metadata: {},
  createdAt: 0,
  errors: [],
  ...over
})

interface Family {
  readonly name: string
  /** The path its results are read from, for `batch`. */
  readonly path: string
  readonly batch: BatchInfo
  /** A result line for `id` whose answer is `text`; `idLast` puts the id after the answer. */
  readonly line: (id: string, text: string, idLast?: boolean) => string
  readonly make: (origin: string, client: Parameters<typeof OpenAiBatch.makeWithClient>[0]) => BatchProvider
}

const families: ReadonlyArray<Family> = [
  {
    name: "openai",
    path: "/v1/files/file-out/content",
    batch: batch({ outputFileId: "file-out" }),
    line: (id, text, idLast) => {
      const response = { status_code: 200, body: { choices: [{ message: { content: text }, finish_reason: "stop" }] } }
      return JSON.stringify(idLast ? { id: "r", response, custom_id: id } : { id: "r", custom_id: id, response })
    },
    make: (origin, client) => OpenAiBatch.makeWithClient(client, { apiKey, baseUrl: `${origin}/v1`, maxResultLineBytes: cap })
  },
  {
    name: "anthropic",
    path: "/v1/messages/batches/b1/results",
    batch: batch({}),
    line: (id, text, idLast) => {
      const result = { type: "succeeded", message: { content: [{ type: "text", text }], stop_reason: "end_turn" } }
      return JSON.stringify(idLast ? { result, custom_id: id } : { custom_id: id, result })
    },
    make: (origin, client) => AnthropicBatch.makeWithClient(client, { apiKey, baseUrl: origin, maxResultLineBytes: cap })
  },
  {
    name: "gemini",
    path: "/download/v1beta/files/out:download?alt=media",
    batch: batch({ outputFileId: "files/out" }),
    line: (id, text, idLast) => {
      const response = { candidates: [{ content: { parts: [{ text }] }, finishReason: "STOP" }] }
      return JSON.stringify(idLast ? { response, key: id } : { key: id, response })
    },
    make: (origin, client) => GeminiBatch.makeWithClient(client, { apiKey, baseUrl: origin, maxResultLineBytes: cap })
  }
]

/** Runs `effect`, collecting its warnings. */
const withWarnings = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const warnings: Array<string> = []
    const logger = Logger.make(({ logLevel, message }) => {
      if (logLevel._tag === "Warning") warnings.push(String(Array.isArray(message) ? message[0] : message))
    })
    const value = yield* effect.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)), Logger.withMinimumLogLevel(LogLevel.Warning))
    return { value, warnings }
  })

describe("result lines over the cap", () => {
  for (const family of families) {
    it.scopedLive(`${family.name}: the row of a huge line fails alone; a huge line without its id at the start is skipped; no newline at the end`, () =>
      Effect.gen(function*() {
        // A normal line, a huge one naming its id first, a huge one naming it last, a normal
        // one, and a huge last line with no newline at all.
        const body = [
          family.line("req-1", "fine"),
          family.line("req-2", huge),
          family.line("req-3", huge, true),
          family.line("req-4", "also fine"),
          family.line("req-5", huge)
        ].join("\n")
        const server = yield* testServer((request, res) => {
          if (request.url === family.path) {
            res.writeHead(200, { "content-type": "application/jsonl" })
            res.end(body)
          } else json(res, 404, { error: { message: `unexpected ${request.url}` } })
        })
        const provider = family.make(server.url, yield* clientOf(clients[0]![1]))
        const { value, warnings } = yield* withWarnings(Stream.runCollect(provider.results(family.batch)))
        const results = Chunk.toReadonlyArray(value) as ReadonlyArray<BatchResult>
        const summary = results.map((r) => (r._tag === "Succeeded" ? [r.customId, "ok", r.text] : [r.customId, r.failure, r.code]))
        assert.deepStrictEqual(summary, [
          ["req-1", "ok", "fine"],
          ["req-2", "permanent", "result_too_large"],
          ["req-4", "ok", "also fine"],
          ["req-5", "permanent", "result_too_large"]
        ])
        const failed = results[1]!
        assert.include(failed._tag === "Failed" ? failed.message : "", "over the 64 KiB cap on a result line")
        assert.strictEqual(warnings.length, 3)
        assert.include(warnings[0]!, "result line 2 of")
        assert.include(warnings[0]!, "req-2 fails (result_too_large)")
        assert.include(warnings[1]!, "skipping unusable result line 3 of")
        assert.include(warnings[1]!, "over the 64 KiB cap")
        assert.include(warnings[2]!, "result line 5 of")
        // The warnings say where and how big, never the answer.
        for (const w of warnings) assert.isBelow(w.length, 400)
      }))
  }

  it.scopedLive("SLUICE_MAX_RESULT_LINE_BYTES sets the cap for providers the registry builds", () =>
    Effect.gen(function*() {
      const family = families[0]!
      const body = [family.line("req-1", "a".repeat(1500)), family.line("req-2", "fine")].join("\n")
      const server = yield* testServer((_, res) => res.end(body))
      const env = { OPENAI_API_KEY: "sk-bounds", OPENAI_BASE_URL: `${server.url}/v1` }
      const codes: Array<ReadonlyArray<string>> = []
      for (const extra of [{}, { SLUICE_MAX_RESULT_LINE_BYTES: "1024" }]) {
        const { message, provider } = yield* providerFromEnv("openai", { ...env, ...extra })
        assert.isDefined(provider, message)
        const results = yield* withWarnings(Stream.runCollect(provider!.results(family.batch)))
        codes.push(Chunk.toReadonlyArray(results.value).map((r) => (r._tag === "Succeeded" ? "ok" : r.code)))
      }
      assert.deepStrictEqual(codes, [["ok", "ok"], ["result_too_large", "ok"]])
      const refused = yield* providerFromEnv("openai", { ...env, SLUICE_MAX_RESULT_LINE_BYTES: "12" })
      assert.include(refused.message ?? "", "SLUICE_MAX_RESULT_LINE_BYTES must be 1024 or more")
    }))

  it("the splitter keeps at most the cap of a line, however long, and reports its length", () => {
    const splitter = new LineSplitter(cap)
    const chunk = new Uint8Array(cap / 2).fill(97)
    const out = []
    // 8 MiB without a newline, in 32 KiB chunks: nothing comes out until the end.
    for (let i = 0; i < 256; i++) out.push(...splitter.push(chunk))
    assert.deepStrictEqual(out, [])
    const [last] = splitter.end()
    assert.strictEqual(last?._tag, "Oversized")
    if (last?._tag === "Oversized") {
      assert.strictEqual(last.bytes, 256 * chunk.length)
      assert.strictEqual(last.head.length, cap)
    }
    // Exactly at the cap is a line; one byte over is not.
    const exact = new LineSplitter(4)
    assert.deepStrictEqual(exact.push(new TextEncoder().encode("abcd\nabcde\r\nab\r\n")), [
      { _tag: "Line", text: "abcd" },
      { _tag: "Oversized", bytes: 6, head: "abcd" },
      { _tag: "Line", text: "ab" }
    ])
    assert.deepStrictEqual(exact.end(), [])
  })

  it("a custom_id is read only as a member of the top-level object", () => {
    assert.strictEqual(topLevelString(`{"id":"x","custom_id":"req-1","response":{"body":"${"a".repeat(100)}`, "custom_id"), "req-1")
    assert.strictEqual(topLevelString(`  {"key" : "k\\"1", "response": {`, "key"), "k\"1")
    // In a nested object, or inside a string (escaped), it does not count.
    assert.isUndefined(topLevelString(`{"response":{"custom_id":"evil"},"x":"`, "custom_id"))
    assert.isUndefined(topLevelString(`{"response":"\\"custom_id\\":\\"evil\\"","more":"`, "custom_id"))
    assert.isUndefined(topLevelString(`{"custom_id":42}`, "custom_id"))
    assert.isUndefined(topLevelString(`{"custom_id":"cut off`, "custom_id"))
  })
})

/**
 * A handler that answers `status` with a body of `total` bytes (`prefix`, then "x" up to the
 * end, then `suffix`), written as fast as the client reads it; `sent` resolves, once the
 * response is closed (finished, or the client dropped the connection), to the bytes the
 * socket took.
 */
const bigBody = (status: number, total: number, prefix: string, suffix: string) => {
  let resolveSent: (bytes: number) => void = () => {}
  const sent = new Promise<number>((resolve) => (resolveSent = resolve))
  const handler = (res: ServerResponse) => {
    let taken = 0
    let written = 0
    let closed = false
    res.on("close", () => {
      closed = true
      resolveSent(taken)
    })
    res.writeHead(status, { "content-type": "application/json", "content-length": String(total) })
    const filler = Buffer.alloc(1024 * 1024, "x")
    const write = (piece: Buffer): boolean => {
      written += piece.length
      return res.write(piece, (error) => {
        if (error === undefined || error === null) taken += piece.length
      })
    }
    const pump = (): void => {
      if (written === 0) write(Buffer.from(prefix))
      while (!closed && written < total - suffix.length) {
        const n = Math.min(filler.length, total - suffix.length - written)
        if (!write(filler.subarray(0, n))) {
          res.once("drain", pump)
          return
        }
      }
      if (!closed && written === total - suffix.length) {
        write(Buffer.from(suffix))
        res.end()
      }
    }
    pump()
  }
  return { sent, handler }
}

const bodySize = 256 * 1024 * 1024
/**
 * Far below the body, far above what the socket buffers on loopback take before the client
 * drops the connection (a few MiB: Linux autotunes a socket's buffers up to 4 MiB to send
 * and 6 MiB to receive).
 */
const bound = 32 * 1024 * 1024

describe("bodies are read up to their cap, then the connection is dropped", () => {
  for (const [clientName, layer] of clients) {
    it.scopedLive(`${clientName}: a 256 MiB error body: the message comes from its start, the rest is never downloaded`, () =>
      Effect.gen(function*() {
        const big = bigBody(400, bodySize, `{"error":{"code":"invalid_request","message":"too bad`, `"}}`)
        const server = yield* testServer((_, res) => big.handler(res))
        const provider = OpenAiBatch.makeWithClient(yield* clientOf(layer), { apiKey, baseUrl: `${server.url}/v1` })
        const exit = yield* Effect.exit(provider.retrieve("b1"))
        assert.isTrue(Exit.isFailure(exit))
        if (Exit.isFailure(exit) && exit.cause._tag === "Fail") {
          assert.strictEqual(exit.cause.error.reason, "Rejected")
          assert.strictEqual(exit.cause.error.status, 400)
          assert.include(exit.cause.error.message, "too badxxx")
        }
        const sent = yield* Effect.promise(() => big.sent)
        assert.isBelow(sent, bound, `the server got to send ${sent} of ${bodySize} bytes`)
      }))

    it.scopedLive(`${clientName}: a JSON answer over maxResponseBytes fails the call and is not read further`, () =>
      Effect.gen(function*() {
        const big = bigBody(200, bodySize, `{"id":"b1","status":"completed","padding":"`, `"}`)
        const server = yield* testServer((_, res) => big.handler(res))
        const provider = OpenAiBatch.makeWithClient(yield* clientOf(layer), {
          apiKey,
          baseUrl: `${server.url}/v1`,
          maxResponseBytes: 1024 * 1024
        })
        const exit = yield* Effect.exit(provider.retrieve("b1"))
        assert.isTrue(Exit.isFailure(exit))
        if (Exit.isFailure(exit) && exit.cause._tag === "Fail") {
          assert.strictEqual(exit.cause.error.reason, "Decode")
          assert.include(exit.cause.error.message, "the answer is larger than 1 MiB")
        }
        const sent = yield* Effect.promise(() => big.sent)
        assert.isBelow(sent, bound, `the server got to send ${sent} of ${bodySize} bytes`)
      }))
  }
})
