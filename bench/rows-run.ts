/**
 * A finished run directory of any size, written without a provider: the manifest, the journal,
 * each shard's request file and row sidecar, results.jsonl and failures.jsonl, in the formats a
 * real run writes them (the journal through its Schema, request lines through the OpenAI codec,
 * answers through the response cache's encoder). For the row index's benchmark (bench/rows.ts)
 * and its tests: `sluice status` reads it as any other run.
 *
 * Deterministic. Of the rows: every 10,000th is rejected at planning (invalid), 3% fail their
 * first attempt as retryable and succeed in a retry shard, 1% fail for good (permanent).
 */
import { CustomId } from "@sluice/core"
import type { BatchRequest } from "@sluice/core"
import { OpenAiBatch } from "@sluice/providers"
import { Schema } from "effect"
import { createHash } from "node:crypto"
import { createWriteStream, mkdirSync, writeFileSync } from "node:fs"
import type { WriteStream } from "node:fs"
import { once } from "node:events"
import { join } from "node:path"
import { JournalEvent } from "../packages/runner/src/JournalEvent.js"
import type { Offsets } from "../packages/runner/src/JournalEvent.js"
import type { FailureRecord } from "../packages/runner/src/Outputs.js"
import { encodeAnswer } from "../packages/runner/src/ResponseCache.js"
import type { Manifest } from "../packages/runner/src/RunDir.js"

const STAGE = "label"
const MODEL = "gpt-4o-mini"
const encodeEvent = Schema.encodeSync(JournalEvent)

/** A file written through a buffer of ~1 MB; tracks its length in bytes. */
class Out {
  private readonly stream: WriteStream
  private parts: Array<string> = []
  private pending = 0
  length = 0
  constructor(path: string) {
    this.stream = createWriteStream(path, { mode: 0o600 })
  }
  async line(text: string): Promise<void> {
    this.parts.push(text, "\n")
    const n = Buffer.byteLength(text) + 1
    this.length += n
    this.pending += n
    if (this.pending >= 1 << 20) await this.flush()
  }
  async flush(): Promise<void> {
    if (this.parts.length === 0) return
    const ok = this.stream.write(this.parts.join(""))
    this.parts = []
    this.pending = 0
    if (!ok) await once(this.stream, "drain")
  }
  async close(): Promise<void> {
    await this.flush()
    this.stream.end()
    await once(this.stream, "finish")
  }
}

const words = ["great", "value", "broke", "quickly", "shipping", "late", "quality", "fine", "price", "returned", "works", "as", "described"]
const textOf = (i: number) => {
  const out: Array<string> = [`Review ${i + 1}:`]
  for (let k = 0; k < 24; k++) out.push(words[(i * 7 + k * 5 + (i >> 3)) % words.length]!)
  return out.join(" ")
}

export interface Generated {
  readonly dir: string
  readonly rows: number
  readonly shards: number
  readonly invalid: number
  readonly permanent: number
  readonly retried: number
}

/** Writes a finished run of `rows` source rows at `dir` (which must not hold a run), shards of `shardSize`. */
export const generateRun = async (dir: string, rows: number, shardSize = 1000): Promise<Generated> => {
  mkdirSync(join(dir, "shards"), { recursive: true, mode: 0o700 })
  const manifest: Manifest = {
    version: 1,
    runId: `bench-rows-${rows}`,
    pipeline: "bench-rows",
    fingerprint: createHash("sha256").update(`bench-rows-${rows}`).digest("hex"),
    pipelineFile: null,
    stages: [{ name: STAGE, provider: "openai", model: MODEL }],
    providers: { openai: { baseUrl: "http://127.0.0.1:1/v1" } },
    sink: null,
    shards: { maxRequests: shardSize, maxBytes: 200 * 1024 * 1024 },
    createdAt: new Date(Date.UTC(2026, 0, 1)).toISOString()
  }
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n", { mode: 0o600 })
  const journal = new Out(join(dir, "journal.jsonl"))
  const results = new Out(join(dir, "results.jsonl"))
  const failures = new Out(join(dir, "failures.jsonl"))
  const record = (event: JournalEvent) => journal.line(JSON.stringify(encodeEvent(event)))
  const offsets = (): Offsets => ({ results: results.length, failures: failures.length, sink: null })
  const t0 = Date.UTC(2026, 0, 1, 12)
  let shards = 0
  let invalid = 0
  let permanent = 0
  let retried = 0
  let sourceOffset = 0

  const requestOf = (text: string): BatchRequest => ({
    _tag: "chat",
    model: MODEL,
    messages: [
      { role: "system", content: "You label product reviews." },
      { role: "user", content: text }
    ],
    params: {}
  })
  const answerOf = (i: number, customId: string) => {
    const text = JSON.stringify({ sentiment: ["positive", "negative", "neutral"][i % 3], topics: [words[i % words.length], words[(i + 5) % words.length]] })
    const usage = { inputTokens: 40 + (i % 17), outputTokens: 12 + (i % 9), cachedInputTokens: 0 }
    return encodeAnswer({
      text,
      finishReason: "stop",
      usage,
      raw: { id: `chatcmpl-${i}`, object: "chat.completion", model: MODEL, custom_id: customId, choices: [{ index: 0, finish_reason: "stop", message: { role: "assistant", content: text } }] }
    })
  }

  type Planned = ReadonlyArray<{ readonly i: number; readonly id: string; readonly sidecar: string }>

  /** A shard's files and its events up to the end of its batch. */
  const plan = async (shard: string, attempt: number, parent: string | null, planned: Planned, extra: { readonly invalid: number; readonly offsets: Offsets | null; readonly sourceOffset: number | null }) => {
    const requestsFile = new Out(join(dir, "shards", `${shard}.jsonl`))
    const sidecarFile = new Out(join(dir, "shards", `${shard}.rows.jsonl`))
    const hash = createHash("sha256")
    for (const row of planned) {
      const line = OpenAiBatch.encode(requestOf(textOf(row.i)), row.id)
      hash.update(line + "\n")
      await requestsFile.line(line)
      await sidecarFile.line(row.sidecar)
    }
    await requestsFile.close()
    await sidecarFile.close()
    shards++
    await record({
      _tag: "ShardPlanned", shard, stage: STAGE, provider: "openai", model: MODEL, endpoint: "chat",
      requests: planned.length, bytes: requestsFile.length, sha256: hash.digest("hex"), attempt, parent,
      sourceOffset: extra.sourceOffset, invalid: extra.invalid, offsets: extra.offsets
    })
  }

  /** The batch's run and its results: first attempts fail 3% retryable (rescheduled), 1% permanent. */
  const answer = async (shard: string, attempt: number, planned: Planned) => {
    const at = t0 + shards * 1000
    const batchId = `batch_${shard}`
    await record({ _tag: "SubmitIntent", shard, submission: 1, at: Math.floor(at / 1000) })
    await record({ _tag: "Staged", shard, submission: 1, inputRef: `file-${shard}` })
    await record({ _tag: "Created", shard, submission: 1, batchId, adopted: false })
    await record({ _tag: "StatusChanged", shard, batchId, status: "in_progress", rawStatus: "in_progress", counts: { total: planned.length, succeeded: 0, failed: 0 }, at: at + 100 })
    const rescheduled: Array<Planned[number]> = []
    let succeeded = 0
    let failed = 0
    const usage = { input: 0, output: 0, cached: 0 }
    const prefix = `{"shard":${JSON.stringify(shard)},"attempt":${attempt},`
    for (const row of planned) {
      const retry = attempt === 1 && row.i % 100 < 3
      if (retry || (attempt === 1 && row.i % 100 === 3)) {
        const code = retry ? "server_error" : "invalid_request"
        const message = retry ? "The server had an error" : "The request was refused"
        const result = { _tag: "Failed", customId: row.id, failure: retry ? "retryable" : "permanent", code, message, status: retry ? 500 : 400, raw: { error: { code, message } } }
        await results.line(prefix + JSON.stringify(result).slice(1))
        if (retry) rescheduled.push(row)
        else {
          failed++
          const f: FailureRecord = { custom_id: row.id, key: `row-${row.i + 1}`, shard, attempt, class: "permanent", code, message, location: `rows.jsonl:${row.i + 1}` }
          await failures.line(JSON.stringify(f))
        }
        continue
      }
      succeeded++
      usage.input += 40 + (row.i % 17)
      usage.output += 12 + (row.i % 9)
      await results.line(`${prefix}"_tag":"Succeeded","customId":${JSON.stringify(row.id)},${answerOf(row.i, row.id).slice(1)}`)
    }
    const counts = { total: planned.length, succeeded, failed: planned.length - succeeded }
    await record({ _tag: "Terminal", shard, batchId, status: "completed", rawStatus: "completed", counts, errors: [] })
    const collect = async (retryShard: string | null) => {
      await results.flush()
      await failures.flush()
      await record({
        _tag: "Collected", shard, succeeded, failed: failed > 0 ? { permanent: failed } : {}, rescheduled: rescheduled.length,
        retryShard, usage, offsets: offsets()
      })
    }
    return { rescheduled, failed, collect }
  }

  let i = 0
  let seq = 0
  let completed = false
  while (i < rows) {
    const planned: Array<{ i: number; id: string; sidecar: string }> = []
    let rejected = 0
    let rejectedOffsets: Offsets | null = null
    while (planned.length < shardSize && i < rows) {
      const key = `row-${i + 1}`
      if ((i + 1) % 10_000 === 0) {
        rejected++
        const f: FailureRecord = { custom_id: null, key, shard: null, attempt: 0, class: "permanent", code: "invalid_input", message: "text: is missing", location: `rows.jsonl:${i + 1}` }
        await failures.line(JSON.stringify(f))
        i++
        continue
      }
      const id = CustomId.make(STAGE, key, createHash("sha256").update(textOf(i)).digest("hex"))
      const sidecar = `{"id":${JSON.stringify(id)},"key":${JSON.stringify(key)},"loc":${JSON.stringify(`rows.jsonl:${i + 1}`)},"input":${JSON.stringify({ id: key, text: textOf(i) })}}`
      planned.push({ i, id, sidecar })
      i++
    }
    if (rejected > 0) {
      await failures.flush()
      rejectedOffsets = offsets()
      invalid += rejected
    }
    sourceOffset = i
    if (planned.length === 0) {
      // Only rejected rows since the last shard: the plan's end lists them.
      await record({ _tag: "PlanComplete", sourceOffset, invalid: rejected, offsets: rejectedOffsets })
      completed = true
      break
    }
    const shard = `${STAGE}-${String(++seq).padStart(5, "0")}`
    await plan(shard, 1, null, planned, { invalid: rejected, offsets: rejectedOffsets, sourceOffset })
    const first = await answer(shard, 1, planned)
    permanent += first.failed
    if (first.rescheduled.length === 0) {
      await first.collect(null)
      continue
    }
    // The retry shard is planned (journaled) before its parent's collection, as the Collector does.
    const retryShard = `${shard}-a2`
    retried += first.rescheduled.length
    await plan(retryShard, 2, shard, first.rescheduled, { invalid: 0, offsets: null, sourceOffset: null })
    await first.collect(retryShard)
    const second = await answer(retryShard, 2, first.rescheduled)
    await second.collect(null)
  }
  if (!completed) await record({ _tag: "PlanComplete", sourceOffset, invalid: 0, offsets: null })
  await journal.close()
  await results.close()
  await failures.close()
  return { dir, rows, shards, invalid, permanent, retried }
}
