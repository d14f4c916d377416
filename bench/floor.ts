/**
 * Bare-loop floors: the same work as a phase of sluice, written as a plain loop with no
 * framework — the practical limit of that phase on this machine. Synchronous file I/O in
 * 256 KiB reads and ~1 MiB writes.
 *
 *   tsx bench/floor.ts plan      --source rows.jsonl --out-dir DIR [--shard-size 50000] [--full]
 *   tsx bench/floor.ts collect   --results-dir DIR --rows-dir DIR --out sink.jsonl [--full]
 *
 * plan:    read the JSONL line by line, JSON.parse, render the same request body sluice
 *          renders for bench/pipeline.ts, JSON.stringify, write shard files of 50,000 lines.
 *          With --full it also does the rest of what sluice's planner does per row, still
 *          without a framework: the request hash and custom_id (sha256), the row sidecar line
 *          ({id, key, loc, input}) and the shard's sha256 — to split sluice's overhead into
 *          "work sluice chose to do" and "framework cost".
 * collect: per shard (one result file `<shard>.jsonl` in --results-dir, and sluice's row
 *          sidecar `<shard>.rows.jsonl` in --rows-dir): read the result lines, JSON.parse
 *          each and the answer inside it, keep the answers of the shard in a Map by custom_id,
 *          then stream the shard's rows, join, JSON.stringify and write the sink line. With
 *          --full it also writes a results.jsonl line per result as sluice does.
 *
 * Prints one JSON line: {mode, rows, ms}.
 */
import { createHash } from "node:crypto"
import { closeSync, openSync, readdirSync, readSync, writeSync } from "node:fs"
import { join } from "node:path"
import { responseFormat, SYSTEM } from "./request.js"

const arg = (name: string, fallback?: string): string => {
  const i = process.argv.indexOf(name)
  const value = i === -1 ? fallback : process.argv[i + 1]
  if (value === undefined) throw new Error(`missing ${name}`)
  return value
}
const full = process.argv.includes("--full")
const mode = process.argv[2]

/** Calls `onLine` for every non-empty line of a file, reading 256 KiB at a time. */
const eachLine = (path: string, onLine: (line: string) => void) => {
  const fd = openSync(path, "r")
  const buf = Buffer.allocUnsafe(256 * 1024)
  const decoder = new TextDecoder()
  let pending = ""
  for (;;) {
    const n = readSync(fd, buf, 0, buf.length, null)
    if (n === 0) break
    const text = pending + decoder.decode(buf.subarray(0, n), { stream: true })
    let start = 0
    let nl = text.indexOf("\n")
    while (nl !== -1) {
      if (nl > start) onLine(text.slice(start, nl))
      start = nl + 1
      nl = text.indexOf("\n", start)
    }
    pending = text.slice(start)
  }
  if (pending.length > 0) onLine(pending)
  closeSync(fd)
}

/** A file written in ~1 MiB writes. */
class Out {
  private readonly fd: number
  private buffer = ""
  constructor(path: string) {
    this.fd = openSync(path, "w")
  }
  line(text: string) {
    this.buffer += text + "\n"
    if (this.buffer.length >= 1 << 20) this.flush()
  }
  flush() {
    if (this.buffer.length > 0) writeSync(this.fd, this.buffer)
    this.buffer = ""
  }
  close() {
    this.flush()
    closeSync(this.fd)
  }
}

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex")

const plan = () => {
  const source = arg("--source")
  const outDir = arg("--out-dir")
  const shardSize = Number(arg("--shard-size", "50000"))
  const constant = sha256(JSON.stringify({ model: "gpt-4o-mini", params: { temperature: 0 }, responseFormat }))
  let rows = 0
  let inShard = 0
  let shard = 0
  let requests: Out | undefined
  let sidecar: Out | undefined
  let hash: ReturnType<typeof createHash> | undefined
  const close = () => {
    requests?.close()
    sidecar?.close()
    hash?.digest("hex")
  }
  eachLine(source, (line) => {
    if (requests === undefined || inShard === shardSize) {
      close()
      shard++
      inShard = 0
      requests = new Out(join(outDir, `floor-${shard}.jsonl`))
      if (full) {
        sidecar = new Out(join(outDir, `floor-${shard}.rows.jsonl`))
        hash = createHash("sha256")
      }
    }
    const row = JSON.parse(line) as { id: string; text: string }
    rows++
    inShard++
    const messages = [
      { role: "system", content: SYSTEM },
      { role: "user", content: row.text }
    ]
    let customId = `label-${row.id}`
    if (full) customId = `label-${row.id}-${sha256(constant + JSON.stringify(messages)).slice(0, 16)}`
    const request = JSON.stringify({
      custom_id: customId,
      method: "POST",
      url: "/v1/chat/completions",
      body: { model: "gpt-4o-mini", messages, temperature: 0, response_format: responseFormat }
    })
    requests.line(request)
    if (full) {
      hash!.update(request + "\n")
      sidecar!.line(JSON.stringify({ id: customId, key: row.id, loc: `${source}:${rows}`, input: row }))
    }
  })
  close()
  return rows
}

const collect = () => {
  const resultsDir = arg("--results-dir")
  const rowsDir = arg("--rows-dir")
  const sink = new Out(arg("--out"))
  const results = full ? new Out(join(resultsDir, "..", "floor-results.jsonl")) : undefined
  let rows = 0
  const shards = readdirSync(resultsDir).filter((f) => f.endsWith(".jsonl")).map((f) => f.slice(0, -".jsonl".length)).sort()
  for (const shard of shards) {
    const answers = new Map<string, unknown>()
    eachLine(join(resultsDir, `${shard}.jsonl`), (line) => {
      const result = JSON.parse(line)
      const body = result.response?.body
      if (result.response?.status_code !== 200 || body === undefined) return
      answers.set(result.custom_id, JSON.parse(body.choices[0].message.content))
      if (results !== undefined) {
        results.line(
          JSON.stringify({
            shard,
            attempt: 1,
            _tag: "Succeeded",
            customId: result.custom_id,
            text: body.choices[0].message.content,
            finishReason: body.choices[0].finish_reason,
            usage: body.usage,
            raw: result
          })
        )
      }
    })
    eachLine(join(rowsDir, `${shard}.rows.jsonl`), (line) => {
      const row = JSON.parse(line) as { id: string; key: string; input: unknown }
      const output = answers.get(row.id)
      if (output === undefined) return
      sink.line(JSON.stringify({ key: row.key, custom_id: row.id, input: row.input, output }))
      rows++
    })
  }
  sink.close()
  results?.close()
  return rows
}

const start = performance.now()
const rows = mode === "plan" ? plan() : mode === "collect" ? collect() : (() => {
  throw new Error("usage: floor.ts plan|collect ...")
})()
console.log(JSON.stringify({ mode, full, rows, ms: performance.now() - start }))
