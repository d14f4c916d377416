/**
 * The benchmark's synthetic dataset: `rows` JSON lines of about 1 KB, `{"id","text"}`, fully
 * deterministic (a seeded PRNG over a fixed vocabulary), so every run on every machine plans
 * the same bytes. The first n rows of a bigger file equal the file of n rows.
 *
 *   tsx bench/dataset.ts --rows 200000 [--out bench/.data/rows-200000.jsonl]
 */
import { closeSync, existsSync, openSync, readFileSync, renameSync, statSync, writeFileSync, writeSync } from "node:fs"
import { seededRandom as mulberry32 } from "../packages/emulator/src/internal/hash.js"

/** Bump when the generator changes: cached files of another version are regenerated. */
export const GENERATOR_VERSION = 1

const WORDS = (
  "the a quality price shipping arrived quickly slowly box broken great terrible fine okay product item " +
  "battery screen sound comfortable cheap expensive support refund return replacement week month day " +
  "after before using works stopped love hate recommend would not again bought gift daughter son kitchen " +
  "office travel durable flimsy sturdy color size fits small large material stitching packaging instructions " +
  "setup easy hard noisy quiet bright dim warm cold fast slow value money worth overall honestly really " +
  "pretty very somewhat barely customer service email phone waited replied helpful rude friendly delivery"
).split(" ")

export const rowId = (i: number): string => `r${String(i + 1).padStart(7, "0")}`

/** Row i's JSON line (no newline); each row has its own seed, so rows are independent of n. */
export const rowLine = (i: number): string => {
  const random = mulberry32(0x5eed + i * 7919)
  const target = 900 + Math.floor(random() * 200) // 900–1099 characters of text
  let text = ""
  let sentence = 0
  while (text.length < target) {
    const w = WORDS[Math.floor(random() * WORDS.length)]!
    if (sentence === 0) text += (text.length > 0 ? " " : "") + w[0]!.toUpperCase() + w.slice(1)
    else text += " " + w
    sentence++
    if (sentence > 6 && random() < 0.15) {
      text += random() < 0.8 ? "." : "!"
      sentence = 0
    }
  }
  return JSON.stringify({ id: rowId(i), text })
}

export interface DatasetInfo {
  readonly path: string
  readonly rows: number
  readonly bytes: number
  readonly generatedMs: number | null
}

/** Writes the dataset unless a file of this generator version and row count exists. */
export const ensureDataset = (path: string, rows: number): DatasetInfo => {
  const metaPath = `${path}.meta.json`
  if (existsSync(path) && existsSync(metaPath)) {
    try {
      const meta = JSON.parse(readFileSync(metaPath, "utf8")) as { version: number; rows: number; bytes: number }
      if (meta.version === GENERATOR_VERSION && meta.rows === rows && statSync(path).size === meta.bytes) {
        return { path, rows, bytes: meta.bytes, generatedMs: null }
      }
    } catch {
      // regenerate
    }
  }
  const start = performance.now()
  const tmp = `${path}.tmp`
  const fd = openSync(tmp, "w")
  let bytes = 0
  let buffer = ""
  for (let i = 0; i < rows; i++) {
    buffer += rowLine(i) + "\n"
    if (buffer.length >= 1 << 20) {
      bytes += writeSync(fd, buffer)
      buffer = ""
    }
  }
  if (buffer.length > 0) bytes += writeSync(fd, buffer)
  closeSync(fd)
  renameSync(tmp, path)
  writeFileSync(metaPath, JSON.stringify({ version: GENERATOR_VERSION, rows, bytes }) + "\n")
  return { path, rows, bytes, generatedMs: performance.now() - start }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name)
    return i === -1 ? undefined : process.argv[i + 1]
  }
  const rows = Number(arg("--rows") ?? 200_000)
  const out = arg("--out") ?? `bench/.data/rows-${rows}.jsonl`
  const info = ensureDataset(out, rows)
  console.log(JSON.stringify(info))
}
