/**
 * The baseline: the same job written with the official `openai` SDK the way the provider's
 * Batch API guide shows it — build the JSONL in memory, upload it, create the batch, poll it,
 * download the output file and join it to the inputs by `custom_id`, in memory. Split into
 * batches of 50,000 requests so that the API accepts them. No checkpointing, no resume, no
 * validation of the answers beyond JSON.parse.
 *
 * Reads OPENAI_API_KEY and OPENAI_BASE_URL like any SDK program.
 *
 *   tsx bench/baseline-sdk.ts --source rows.jsonl --out out.jsonl [--batch-size 50000] [--poll-interval 0.2]
 */
import OpenAI, { toFile } from "openai"
import { createReadStream, createWriteStream } from "node:fs"
import { once } from "node:events"
import { createInterface } from "node:readline"
import { responseFormat, SYSTEM } from "./request.js"

const arg = (name: string, fallback?: string): string => {
  const i = process.argv.indexOf(name)
  const value = i === -1 ? fallback : process.argv[i + 1]
  if (value === undefined) throw new Error(`missing ${name}`)
  return value
}

const source = arg("--source")
const outPath = arg("--out")
const batchSize = Number(arg("--batch-size", "50000"))
const pollMs = Number(arg("--poll-interval", "0.2")) * 1000

interface Review {
  readonly id: string
  readonly text: string
}


const client = new OpenAI()
const t0 = performance.now()
const log = (text: string) => console.error(`baseline: ${((performance.now() - t0) / 1000).toFixed(2)}s ${text}`)

// Every input row, by custom_id, for the join at the end.
const inputs = new Map<string, Review>()
const batchIds: Array<string> = []

const submit = async (lines: Array<string>, n: number) => {
  log(`batch ${n}: uploading ${lines.length} requests`)
  const file = await client.files.create({
    file: await toFile(Buffer.from(lines.join("\n") + "\n"), `batch-${n}.jsonl`),
    purpose: "batch"
  })
  const batch = await client.batches.create({
    input_file_id: file.id,
    endpoint: "/v1/chat/completions",
    completion_window: "24h"
  })
  batchIds.push(batch.id)
  log(`batch ${n} created: ${batch.id} (${lines.length} requests)`)
}

// 1. Build the JSONL (in memory, 50,000 requests per batch), upload it, create the batch.
let lines: Array<string> = []
for await (const line of createInterface({ input: createReadStream(source), crlfDelay: Infinity })) {
  if (line.trim() === "") continue
  const row = JSON.parse(line) as Review
  const customId = `label-${row.id}`
  inputs.set(customId, row)
  lines.push(
    JSON.stringify({
      custom_id: customId,
      method: "POST",
      url: "/v1/chat/completions",
      body: {
        model: "gpt-4o-mini",
        messages: [
          { role: "system", content: SYSTEM },
          { role: "user", content: row.text }
        ],
        temperature: 0,
        response_format: responseFormat
      }
    })
  )
  if (lines.length === batchSize) {
    await submit(lines, batchIds.length + 1)
    lines = []
  }
}
if (lines.length > 0) await submit(lines, batchIds.length + 1)

// 2. Poll until every batch is done; 3. download each output and join it to the inputs.
const out = createWriteStream(outPath)
let succeeded = 0
let failed = 0
const pending = new Set(batchIds)
while (pending.size > 0) {
  for (const id of [...pending]) {
    const batch = await client.batches.retrieve(id)
    if (batch.status === "completed") {
      pending.delete(id)
      log(`batch ${id} completed; downloading`)
      if (batch.output_file_id) {
        const content = await client.files.content(batch.output_file_id)
        const text = await content.text()
        let chunk = ""
        for (const resultLine of text.split("\n")) {
          if (resultLine === "") continue
          const result = JSON.parse(resultLine)
          const input = inputs.get(result.custom_id)
          if (input === undefined || result.response?.status_code !== 200) {
            failed++
            continue
          }
          const output = JSON.parse(result.response.body.choices[0].message.content)
          chunk += JSON.stringify({ key: input.id, custom_id: result.custom_id, input, output }) + "\n"
          succeeded++
        }
        if (!out.write(chunk)) await once(out, "drain")
      }
      if (batch.error_file_id) {
        const errors = await (await client.files.content(batch.error_file_id)).text()
        failed += errors.split("\n").filter((l) => l !== "").length
      }
      log(`batch ${id} collected`)
    } else if (batch.status === "failed" || batch.status === "expired" || batch.status === "cancelled") {
      pending.delete(id)
      log(`batch ${id} ended ${batch.status}`)
    }
  }
  if (pending.size > 0) await new Promise((resolve) => setTimeout(resolve, pollMs))
}
out.end()
await once(out, "finish")
console.log(JSON.stringify({ rows: inputs.size, succeeded, failed, batches: batchIds.length }))
