/**
 * One shard upload (`OpenAiBatch.stage`) while the event loop is busy, as it is when planning or
 * collection runs beside the upload: a task of `busy` ms takes every turn of the loop. Prints the
 * upload's wall time and how many turns the busy task got (each read piece of the body waits for
 * one). Compare builds by pointing it at another checkout's root (built, with node_modules).
 *
 *   node bench/emulator-server.ts … (prints its url)
 *   node bench/upload-busy.mjs <sluice root> <emulator url> <shard file> <busy ms per turn>
 */
import { pathToFileURL } from "node:url"

const [root, url, file, busyArg] = process.argv.slice(2)
const busy = Number(busyArg ?? 10)
const load = (p) => import(pathToFileURL(`${root}/${p}`).href)
const { OpenAiBatch } = await load("packages/providers/dist/index.js")
const { NodeHttpClient } = await load("node_modules/@effect/platform-node/dist/esm/index.js")
const { Effect, Redacted } = await load("node_modules/effect/dist/esm/index.js")

let stop = false
let turns = 0
const spin = () => {
  if (stop) return
  turns++
  const end = performance.now() + busy
  while (performance.now() < end);
  setImmediate(spin)
}
const program = Effect.gen(function* () {
  const provider = yield* OpenAiBatch.make({ apiKey: Redacted.make("sk-bench"), baseUrl: `${url}/v1` })
  if (busy > 0) setImmediate(spin)
  const started = performance.now()
  yield* provider.stage(file, `upload-busy-${Date.now()}`)
  stop = true
  return performance.now() - started
}).pipe(Effect.provide(NodeHttpClient.layerUndici))
const ms = await Effect.runPromise(program)
console.log(JSON.stringify({ root, busy, seconds: +(ms / 1000).toFixed(2), busyTurns: turns }))
process.exit(0)
