/**
 * The bounded sample of rows `sluice report` embeds: the first rows of the run, and examples of
 * every failure class wherever they are. Four streaming passes, each keeping only the sample:
 * failures.jsonl (pick the examples), the shards' row sidecars (pick the rows), failures.jsonl
 * again (the sample's failures) and results.jsonl (the sample's answers).
 */
import * as Path from "@effect/platform/Path"
import { Effect, Stream } from "effect"
import { lines } from "./internal/lines.js"
import { resultHead } from "./internal/resultLine.js"
import type { FailureRecord } from "./Outputs.js"
import type { RowView } from "./ReportPage.js"
import { superseded } from "./Retry.js"
import * as RunDir from "./RunDir.js"
import { loadState } from "./Runner.js"
import { committed } from "./RunView.js"

export interface Sample {
  readonly rows: ReadonlyArray<RowView>
  readonly raws: Readonly<Record<string, unknown>>
}

/** A repair's custom_id is its row's with `-r<n>`: both are the same row. */
const rowIdOf = (customId: string): string => customId.replace(/(-r\d+)+$/, "")

/** Text as JSON when it is JSON, else the text. */
const parsedOrText = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

export const sample = (root: string, options: { readonly rows: number; readonly perClass: number }) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const paths = RunDir.paths(path.resolve(root), path)
    const state = yield* loadState(paths.journal)

    /** failures.jsonl lines that stand (committed, not taken back by a retry). */
    const standingFailures = Stream.suspend(() => {
      let at = 0
      return committed(paths.failures, state.offsets.failures).pipe(
        Stream.map((line) => {
          const start = at
          at += Buffer.byteLength(line) + 1
          const record = JSON.parse(line) as FailureRecord
          return superseded(state, start, record) ? undefined : record
        }),
        Stream.filter((r): r is FailureRecord => r !== undefined)
      )
    })

    // 1. Examples of every class; rows rejected at planning have no request (and no custom_id).
    const examples = new Set<string>()
    const perClass = new Map<string, number>()
    const invalid: Array<RowView> = []
    yield* standingFailures.pipe(
      Stream.runForEach((f) =>
        Effect.sync(() => {
          const n = perClass.get(f.class) ?? 0
          if (n >= options.perClass) return
          perClass.set(f.class, n + 1)
          if (f.custom_id !== null) examples.add(rowIdOf(f.custom_id))
          else {
            invalid.push({
              index: -1,
              customId: `invalid:${f.location ?? invalid.length}`,
              key: f.key,
              stage: "",
              shard: "",
              status: "invalid",
              failure: { class: f.class, code: f.code, message: `${f.message}${f.location === undefined ? "" : ` (${f.location})`}` },
              input: null,
              output: null,
              cached: false
            })
          }
        })
      )
    )

    // 2. The rows: those of first-attempt shards in the run's order (retries and repairs resubmit them).
    const picked = new Map<string, { index: number; key: string | null; stage: string; shard: string; input: unknown; cached: boolean }>()
    let index = 0
    for (const shard of state.shards.values()) {
      if (shard.attempt !== 1 || shard.parent !== null) continue
      yield* lines(paths.rowsFile(shard.id)).pipe(
        Stream.runForEach((line) =>
          Effect.sync(() => {
            const i = index++
            const id = line.startsWith(`{"id":"`) ? line.slice(7, line.indexOf(`"`, 7)) : ""
            if (i >= options.rows && !examples.has(id)) return
            const row = JSON.parse(line) as { id: string; key: string | null; input: unknown; c?: unknown }
            if (i >= options.rows && !examples.has(row.id)) return
            picked.set(row.id, { index: i, key: row.key, stage: shard.stage, shard: shard.id, input: row.input, cached: row.c !== undefined })
          })
        ),
        Effect.catchIf((e) => e._tag === "SystemError" && e.reason === "NotFound", () => Effect.void)
      )
    }

    // 3. Their failures (the last one of a row stands).
    const failures = new Map<string, FailureRecord>()
    yield* standingFailures.pipe(
      Stream.runForEach((f) =>
        Effect.sync(() => {
          if (f.custom_id !== null && picked.has(rowIdOf(f.custom_id))) failures.set(rowIdOf(f.custom_id), f)
        })
      )
    )

    // 4. Their answers (the last one of a row stands: retries and repairs come later).
    const answers = new Map<string, { succeeded: boolean; text: string | null; raw: unknown }>()
    yield* committed(paths.results, state.offsets.results).pipe(
      Stream.runForEach((line) =>
        Effect.sync(() => {
          const head = resultHead(line)
          if (head === undefined || !picked.has(rowIdOf(head.customId))) return
          const result = JSON.parse(line) as { text?: string; raw?: unknown }
          answers.set(rowIdOf(head.customId), { succeeded: head.succeeded, text: head.succeeded ? (result.text ?? null) : null, raw: result.raw ?? result })
        })
      )
    )

    const raws: Record<string, unknown> = {}
    const rows: Array<RowView> = [...picked.entries()]
      .sort((a, b) => a[1].index - b[1].index)
      .map(([customId, r]) => {
        const failure = failures.get(customId)
        const answer = answers.get(customId)
        if (answer !== undefined) raws[customId] = answer.raw
        return {
          index: r.index,
          customId,
          key: r.key,
          stage: r.stage,
          shard: r.shard,
          status: failure !== undefined ? "failed" : answer?.succeeded === true ? "succeeded" : "pending",
          failure: failure === undefined ? null : { class: failure.class, code: failure.code, message: failure.message },
          input: r.input,
          output: answer?.text == null ? null : parsedOrText(answer.text),
          cached: r.cached
        }
      })
    return { rows: [...rows, ...invalid], raws } satisfies Sample
  })
