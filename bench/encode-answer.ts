/**
 * The cost per row of an answer's stored form (`ResponseCache.encodeAnswer`: the cache entry and
 * the tail of its results.jsonl line) with the provider's line spliced in as received, against
 * serialising the parsed line again (the same results without `rawText`). In process, CPU only.
 *
 *   node --conditions=sluice-source --import tsx bench/encode-answer.ts
 */
import { Either } from "effect"
import { parseResultLine } from "../packages/providers/src/openai/internal/codec.js"
import { encodeAnswer } from "../packages/runner/src/ResponseCache.js"

const n = 50_000
const lines: Array<string> = []
for (let i = 0; i < n; i++) {
  const content = JSON.stringify({ label: "positive", confidence: 0.87, reason: `row ${i} ` + "because the review says so ".repeat(6) })
  lines.push(JSON.stringify({
    id: `batch_req_${i}`,
    custom_id: `label-${i.toString(16).padStart(16, "0")}`,
    response: {
      status_code: 200,
      request_id: `req_${i}`,
      body: {
        id: `chatcmpl-${i}`, object: "chat.completion", created: 1700000000, model: "gpt-4o-mini-2024-07-18",
        choices: [{ index: 0, message: { role: "assistant", content, refusal: null }, logprobs: null, finish_reason: "stop" }],
        usage: { prompt_tokens: 250, completion_tokens: 40, total_tokens: 290, prompt_tokens_details: { cached_tokens: 0 } },
        system_fingerprint: "fp_1"
      }
    },
    error: null
  }))
}
const received = lines.map((l) => Either.getOrThrow(parseResultLine(l)))
const reserialised = received.map((r) => ({ ...r, rawText: undefined }))
const time = (label: string, results: ReadonlyArray<Parameters<typeof encodeAnswer>[0]>) => {
  let best = Infinity
  for (let k = 0; k < 7; k++) {
    const started = performance.now()
    for (const r of results) encodeAnswer(r)
    best = Math.min(best, performance.now() - started)
  }
  console.log(`${label}: ${((best * 1000) / n).toFixed(2)} µs per answer (best of 7 passes over ${n})`)
}
console.log(`result lines of ~${lines[0]!.length} bytes`)
time("raw serialised again", reserialised as never)
time("raw spliced as received", received as never)
