/**
 * Do two cores help? The full-work floors of bench/floor.ts (`--full`) with the per-row work
 * — parse, render, hash, encode when planning; parse a result line and its answer, encode the
 * results.jsonl line when collecting — done in chunks of rows, either on the main thread
 * (`--threads 0`) or by N worker threads, the main thread reading, joining and writing in
 * order. The chunk functions are the same in both, so the difference is the threads: what
 * they save in the main thread's time against what handing rows across costs (every chunk's
 * text is copied to the worker and back).
 *
 *   tsx bench/threads.ts plan    --source rows.jsonl --out-dir DIR --threads N [--chunk 2000]
 *   tsx bench/threads.ts collect --results-dir DIR --rows-dir DIR --out sink.jsonl --threads N
 *
 * Prints one JSON line: {mode, threads, rows, ms, cpuMs}.
 */
import { createHash } from "node:crypto"
import { closeSync, openSync, readdirSync, readSync, writeSync } from "node:fs"
import { join } from "node:path"
import { isMainThread, parentPort, Worker } from "node:worker_threads"
import { responseFormat, SYSTEM } from "./request.js"

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex")
const constant = sha256(JSON.stringify({ model: "gpt-4o-mini", params: { temperature: 0 }, responseFormat }))

interface PlanChunk {
  readonly kind: "plan"
  readonly source: string
  readonly first: number
  readonly lines: ReadonlyArray<string>
}
interface CollectChunk {
  readonly kind: "collect"
  readonly shard: string
  readonly lines: ReadonlyArray<string>
}
type Chunk = PlanChunk | CollectChunk

/** What a chunk becomes: text to append to files, and for a collect chunk the answers by custom_id. */
interface Done {
  readonly requests?: string
  readonly sidecar?: string
  readonly results?: string
  readonly ids?: ReadonlyArray<string>
  readonly answers?: ReadonlyArray<string>
}

/** The planner's per-row work (floor.ts plan --full), for a chunk of source lines. */
const planChunk = (c: PlanChunk): Done => {
  let requests = ""
  let sidecar = ""
  c.lines.forEach((line, i) => {
    const row = JSON.parse(line) as { id: string; text: string }
    const messages = [
      { role: "system", content: SYSTEM },
      { role: "user", content: row.text }
    ]
    const customId = `label-${row.id}-${sha256(constant + JSON.stringify(messages)).slice(0, 16)}`
    requests +=
      JSON.stringify({ custom_id: customId, method: "POST", url: "/v1/chat/completions", body: { model: "gpt-4o-mini", messages, temperature: 0, response_format: responseFormat } }) + "\n"
    sidecar += JSON.stringify({ id: customId, key: row.id, loc: `${c.source}:${c.first + i + 1}`, input: row }) + "\n"
  })
  return { requests, sidecar }
}

/** The collector's per-result work (floor.ts collect --full): decode, keep the answer's text, encode the results line. */
const collectChunk = (c: CollectChunk): Done => {
  const ids: Array<string> = []
  const answers: Array<string> = []
  let results = ""
  for (const line of c.lines) {
    const result = JSON.parse(line)
    const body = result.response?.body
    if (result.response?.status_code !== 200 || body === undefined) continue
    const text = body.choices[0].message.content as string
    ids.push(result.custom_id)
    answers.push(JSON.stringify(JSON.parse(text)))
    results +=
      JSON.stringify({ shard: c.shard, attempt: 1, _tag: "Succeeded", customId: result.custom_id, text, finishReason: body.choices[0].finish_reason, usage: body.usage, raw: result }) + "\n"
  }
  return { ids, answers, results }
}

const work = (c: Chunk): Done => (c.kind === "plan" ? planChunk(c) : collectChunk(c))

if (!isMainThread) {
  parentPort!.on("message", (m: { seq: number; chunk: Chunk }) => parentPort!.postMessage({ seq: m.seq, done: work(m.chunk) }))
  parentPort!.postMessage("ready")
} else {
  const arg = (name: string, fallback?: string): string => {
    const i = process.argv.indexOf(name)
    const value = i === -1 ? fallback : process.argv[i + 1]
    if (value === undefined) throw new Error(`missing ${name}`)
    return value
  }
  const mode = process.argv[2]
  const threads = Number(arg("--threads", "0"))
  const chunkRows = Number(arg("--chunk", "2000"))

  // Chunks go out round robin, at most two per worker at once, and come back in order.
  // A worker thread does not inherit tsx's loader hooks (Node 20): it registers them itself.
  const boot = `import("tsx/esm/api").then((tsx) => tsx.register()).then(() => import(${JSON.stringify(import.meta.url)}))`
  const workers = Array.from({ length: threads }, () => new Worker(boot, { eval: true }))
  const waiting = new Map<number, (d: Done) => void>()
  // Timing starts once every worker has loaded (a run would start its pool once).
  await Promise.all(
    workers.map((w) => new Promise<void>((ready) => w.on("message", (m: "ready" | { seq: number; done: Done }) => (m === "ready" ? ready() : waiting.get(m.seq)!(m.done)))))
  )
  const inFlight: Array<Promise<Done>> = []
  let seq = 0
  const submit = (chunk: Chunk): Promise<Done> => {
    if (threads === 0) return Promise.resolve(work(chunk))
    const s = seq++
    return new Promise((resolve) => {
      waiting.set(s, (d) => {
        waiting.delete(s)
        resolve(d)
      })
      workers[s % threads]!.postMessage({ seq: s, chunk })
    })
  }

  /** The non-empty lines of a file, a chunk at a time (256 KiB reads, as floor.ts). */
  async function* chunksOf(path: string) {
    const fd = openSync(path, "r")
    const buf = Buffer.allocUnsafe(256 * 1024)
    const decoder = new TextDecoder()
    let pending = ""
    let lines: Array<string> = []
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null)
      const text = pending + (n === 0 ? decoder.decode() : decoder.decode(buf.subarray(0, n), { stream: true }))
      const parts = text.split("\n")
      pending = n === 0 ? "" : parts.pop()!
      for (const p of parts) {
        if (p.length === 0) continue
        lines.push(p)
        if (lines.length === chunkRows) {
          yield lines
          lines = []
        }
      }
      if (n === 0) break
    }
    if (lines.length > 0) yield lines
    closeSync(fd)
  }

  const write = (fd: number, text: string | undefined) => {
    if (text !== undefined && text.length > 0) writeSync(fd, text)
  }

  const plan = async () => {
    const source = arg("--source")
    const outDir = arg("--out-dir")
    const shardSize = Number(arg("--shard-size", "50000"))
    if (shardSize % chunkRows !== 0) throw new Error("--shard-size must be a multiple of --chunk")
    let rows = 0
    let shard = -1
    let files: { requests: number; sidecar: number; hash: ReturnType<typeof createHash> } | undefined
    const close = () => {
      if (files === undefined) return
      closeSync(files.requests)
      closeSync(files.sidecar)
      files.hash.digest("hex")
    }
    const settle = async () => {
      const done = await inFlight.shift()!
      const at = Math.floor(rows / shardSize)
      if (at !== shard) {
        close()
        shard = at
        files = { requests: openSync(join(outDir, `t-${shard}.jsonl`), "w"), sidecar: openSync(join(outDir, `t-${shard}.rows.jsonl`), "w"), hash: createHash("sha256") }
      }
      write(files!.requests, done.requests)
      write(files!.sidecar, done.sidecar)
      files!.hash.update(done.requests!)
      rows += done.requests!.split("\n").length - 1
    }
    let first = 0
    for await (const lines of chunksOf(source)) {
      inFlight.push(submit({ kind: "plan", source, first, lines }))
      first += lines.length
      if (inFlight.length >= Math.max(1, 2 * threads)) await settle()
    }
    while (inFlight.length > 0) await settle()
    close()
    return rows
  }

  const collect = async () => {
    const resultsDir = arg("--results-dir")
    const rowsDir = arg("--rows-dir")
    const sink = openSync(arg("--out"), "w")
    const results = openSync(join(resultsDir, "..", "threads-results.jsonl"), "w")
    let rows = 0
    const shards = readdirSync(resultsDir).filter((f) => f.endsWith(".jsonl")).map((f) => f.slice(0, -".jsonl".length)).sort()
    for (const shard of shards) {
      const answers = new Map<string, string>()
      const settle = async () => {
        const done = await inFlight.shift()!
        done.ids!.forEach((id, i) => answers.set(id, done.answers![i]!))
        write(results, done.results)
      }
      for await (const lines of chunksOf(join(resultsDir, `${shard}.jsonl`))) {
        inFlight.push(submit({ kind: "collect", shard, lines }))
        if (inFlight.length >= Math.max(1, 2 * threads)) await settle()
      }
      while (inFlight.length > 0) await settle()
      let out = ""
      for await (const lines of chunksOf(join(rowsDir, `${shard}.rows.jsonl`))) {
        for (const line of lines) {
          const row = JSON.parse(line) as { id: string; key: string; input: unknown }
          const output = answers.get(row.id)
          if (output === undefined) continue
          out += `{"key":${JSON.stringify(row.key)},"custom_id":${JSON.stringify(row.id)},"input":${JSON.stringify(row.input)},"output":${output}}\n`
          rows++
        }
        write(sink, out)
        out = ""
      }
    }
    closeSync(sink)
    closeSync(results)
    return rows
  }

  const start = performance.now()
  const cpu = process.cpuUsage()
  const rows = mode === "plan" ? await plan() : mode === "collect" ? await collect() : (() => {
    throw new Error("usage: threads.ts plan|collect ...")
  })()
  const ms = performance.now() - start
  const used = process.cpuUsage(cpu)
  await Promise.all(workers.map((w) => w.terminate()))
  console.log(JSON.stringify({ mode, threads, rows, ms, cpuMs: (used.user + used.system) / 1000 }))
}
