/**
 * The benchmark's synthetic dataset: `rows` JSON lines of about 1 KB, `{"id","text"}`, fully
 * deterministic (a seeded PRNG over a fixed vocabulary), so every run on every machine plans
 * the same bytes. The first n rows of a bigger file equal the file of n rows. `chars` sets the
 * text's size (0.9–1.1× of it; 1000 by default): the 10-million-row run uses shorter rows so
 * that its run files fit on the disk. Lines are written as they are generated (1 MiB at a time).
 *
 *   tsx bench/dataset.ts --rows 200000 [--chars 1000] [--out bench/.data/rows-200000.jsonl]
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

export const DEFAULT_CHARS = 1000

/** Where the dataset of `rows` rows of `chars` characters is cached. */
export const datasetPath = (dir: string, rows: number, chars = DEFAULT_CHARS): string =>
  `${dir}/rows-${rows}${chars === DEFAULT_CHARS ? "" : `-c${chars}`}.jsonl`

export const rowId = (i: number): string => `r${String(i + 1).padStart(7, "0")}`

/** Row i's JSON line (no newline); each row has its own seed, so rows are independent of n. */
export const rowLine = (i: number, chars = DEFAULT_CHARS): string => {
  const random = mulberry32(0x5eed + i * 7919)
  const target = Math.round(chars * 0.9) + Math.floor(random() * Math.round(chars * 0.2)) // 900–1099 characters of text by default
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
export const ensureDataset = (path: string, rows: number, chars = DEFAULT_CHARS): DatasetInfo => {
  const metaPath = `${path}.meta.json`
  if (existsSync(path) && existsSync(metaPath)) {
    try {
      const meta = JSON.parse(readFileSync(metaPath, "utf8")) as { version: number; rows: number; bytes: number; chars?: number }
      if (meta.version === GENERATOR_VERSION && meta.rows === rows && (meta.chars ?? DEFAULT_CHARS) === chars && statSync(path).size === meta.bytes) {
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
    buffer += rowLine(i, chars) + "\n"
    if (buffer.length >= 1 << 20) {
      bytes += writeSync(fd, buffer)
      buffer = ""
    }
  }
  if (buffer.length > 0) bytes += writeSync(fd, buffer)
  closeSync(fd)
  renameSync(tmp, path)
  writeFileSync(metaPath, JSON.stringify({ version: GENERATOR_VERSION, rows, chars, bytes }) + "\n")
  return { path, rows, bytes, generatedMs: performance.now() - start }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name)
    return i === -1 ? undefined : process.argv[i + 1]
  }
  const rows = Number(arg("--rows") ?? 200_000)
  const chars = Number(arg("--chars") ?? DEFAULT_CHARS)
  const out = arg("--out") ?? datasetPath("bench/.data", rows, chars)
  const info = ensureDataset(out, rows, chars)
  console.log(JSON.stringify(info))
}
