/**
 * The emulator in a process of its own, so that its CPU and memory are not counted as
 * sluice's (or the baseline's). Full speed: instant processing, short validating and
 * finalizing. Prints one JSON line `{"url", "port", "pid", "stateDir"}` on stdout when it
 * listens, and closes on SIGTERM / SIGINT or when stdin closes (the parent died).
 *
 *   node --conditions=sluice-source --import tsx bench/emulator-server.ts --state-dir bench/.data/emulator [--validating-ms 10] [--finalizing-ms 10] [--real-tokens]
 */
import { startEmulator } from "../packages/emulator/src/Emulator.js"

const arg = (name: string) => {
  const i = process.argv.indexOf(name)
  return i === -1 ? undefined : process.argv[i + 1]
}

const stateDir = arg("--state-dir")
const emulator = await startEmulator({
  port: 0,
  host: "127.0.0.1",
  validatingMs: Number(arg("--validating-ms") ?? 10),
  finalizingMs: Number(arg("--finalizing-ms") ?? 10),
  requestsPerSecond: Infinity,
  // gpt-tokenizer took ~27% of the emulator's CPU (BENCHMARKS.md H7): the emulator shares the
  // two cores with what is measured. `--real-tokens` counts with the tokenizer again.
  approximateTokens: !process.argv.includes("--real-tokens"),
  ...(stateDir === undefined ? {} : { stateDir })
})
process.stdout.write(JSON.stringify({ url: emulator.url, port: emulator.port, pid: process.pid, stateDir: stateDir ?? null }) + "\n")

let closing = false
const stop = () => {
  if (closing) return
  closing = true
  void emulator.close().then(() => process.exit(0), () => process.exit(1))
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
process.stdin.on("end", stop)
process.stdin.on("close", stop)
process.stdin.resume()
