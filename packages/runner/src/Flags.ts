/**
 * The CLI's options that take a number or a price file. Each number is checked against its
 * range where it is parsed: a value out of range stops the command (exit 2) before anything
 * is read or written, with a message naming the flag, the range and the value given
 * ("--concurrency must be an integer from 1 to 10000, got 0"). The run's ranges live in
 * Settings.ts, shared with the library's options; commands share these definitions, so a
 * flag means the same everywhere.
 */
import { Args, HelpDoc, Options, ValidationError } from "@effect/cli"
import { Duration, Effect, Either } from "effect"
import * as EnqueuedTokens from "./EnqueuedTokens.js"
import { defaultOnlineBelow, parseDuration } from "./Hybrid.js"
import { databaseUrlVariable } from "./internal/clusterEnv.js"
import { describeRange, inRange, ranges } from "./Settings.js"
import type { Range } from "./Settings.js"

/**
 * A number option limited to `range` (an integer one when the range says so). Its help names
 * the range and, given `byDefault`, the default: "(an integer from 1 to 10000; default 4)".
 */
export const bounded = (name: string, range: Range, description: string, byDefault?: string): Options.Options<number> =>
  (range.integer === true ? Options.integer(name) : Options.float(name)).pipe(
    Options.withDescription(`${description} (${describeRange(range)}${byDefault === undefined ? "" : `; default ${byDefault}`})`),
    Options.mapEffect((n) =>
      inRange(range, n)
        ? Effect.succeed(n)
        : Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--${name} must be ${describeRange(range)}, got ${n}`)))
    )
  )

// ---------------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------------

export const concurrency = bounded(
  "concurrency",
  ranges.concurrency,
  "batches in flight at once; online, requests in flight at once (the cap the adaptive limiter stays under, and at most how many requests a crash sends again)",
  "4 batches, 8 online requests"
).pipe(Options.optional)

export const mode = Options.choice("mode", ["batch", "online", "auto"]).pipe(
  Options.withDescription(
    "how every stage's requests are sent, over the stages' own mode: batch (the batch API, half price), online (the real-time endpoint, now), " +
      "auto (batch where the provider has a batch API, online where it has none); shards that started one way stay that way. " +
      "The run records it: resume and retry keep it unless given again (default: as the run recorded it, else each stage's mode, else batch)"
  ),
  Options.optional
)

export const rpm = bounded(
  "rpm",
  ranges.rpm,
  "online: requests per minute per provider at most, never exceeded (requests are spaced 60 s / N apart)",
  "no cap but the provider's own limits"
).pipe(Options.optional)

export const tpm = bounded(
  "tpm",
  ranges.tpm,
  "online: tokens per minute per provider at most, by each request's estimate (input tokens plus its max_tokens, else --output-tokens)",
  "no cap but the provider's own limits"
).pipe(Options.optional)

// Hybrid runs (mode auto): see Hybrid.ts.

export const deadline = Options.text("deadline").pipe(
  Options.withDescription(
    "auto mode: when this long has passed since the deadline was first given (90s, 45m, 2h, 1h30m, 1d), batches in flight are cancelled (their finished rows kept) " +
      "and every row still unanswered goes online; journaled as an absolute time, so a resume keeps it (default: none)"
  ),
  Options.mapEffect((text) =>
    Either.match(parseDuration(text), {
      onLeft: (problem) => Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--deadline must be ${problem}`))),
      onRight: Effect.succeed
    })
  ),
  Options.optional
)

// `sluice gc`

/** Seven days: longer than any batch's completion window, and a week to collect what it left. */
export const defaultGcAge = "7d"

export const olderThan = Options.text("older-than").pipe(
  Options.withDescription(
    `what runs gc does not see (not given, not under --runs-dir) made more recently than this (90s, 45m, 2h, 1d; 0 for no age) is kept: a run of another machine may still collect it (default: ${defaultGcAge})`
  ),
  Options.withDefault(defaultGcAge),
  Options.mapEffect((text) =>
    text.trim() === "0"
      ? Effect.succeed(0)
      : Either.match(parseDuration(text), {
        onLeft: (problem) => Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--older-than must be ${problem}`))),
        onRight: (d) => Effect.succeed(Duration.toSeconds(d))
      })
  )
)

export const onlineBudget = bounded(
  "online-budget",
  ranges.budget,
  "auto mode: USD at real-time prices that rows sent online instead of by batch (after the deadline, of an expired batch, a small remainder) may cost at most (projected from token counts); the rest stay unanswered until a resume with a higher cap. The run records it: resume and retry keep it unless given again",
  "as the run recorded it, else no limit"
).pipe(Options.optional)

export const onlineBelow = bounded(
  "online-below",
  ranges.onlineBelow,
  "auto mode: rows to retry (missing, failed in passing, to repair) go online rather than into a new batch when there are fewer than this; 0: never. The run records it: resume and retry keep it unless given again",
  `as the run recorded it, else ${defaultOnlineBelow}`
).pipe(Options.optional)

export const shardSize = bounded(
  "shard-size",
  ranges.shardSize,
  "requests per batch at most, capped at the provider's limit",
  "50,000"
).pipe(Options.optional)

export const pollSeconds = bounded(
  "poll-interval",
  ranges.pollSeconds,
  "a fixed wait in seconds between status polls of a batch, the first at once; under 1 only against a local address (the emulator). " +
    "Not given: adaptive — the first poll 2 s after submission, then 1.5× longer each time up to --max-poll-interval, sooner when the batch's counts predict its end",
  "adaptive"
).pipe(Options.optional)

export const maxPollSeconds = bounded(
  "max-poll-interval",
  ranges.maxPollSeconds,
  "the longest wait in seconds between two status polls of a batch on the adaptive schedule (ignored with --poll-interval); " +
    "never shorter than the provider's floor (1 s OpenAI/Azure, 5 s Anthropic, 2 s Gemini; none for the local emulator)",
  "30"
).pipe(Options.optional)

export const budget = bounded(
  "budget",
  ranges.budget,
  "USD at batch prices the run may submit at most (projected from token counts); the rest waits. Every model needs a price (see --prices). The run records it: resume and retry keep it unless given again (a higher one continues)",
  "no limit"
).pipe(Options.optional)

export const maxEnqueuedTokens = Options.text("max-enqueued-tokens").pipe(
  Options.withDescription(
    "input tokens the batches of one provider and model may have enqueued at once, across the runs sharing this cache directory (with --cluster: all runs of the cluster, the lowest limit given applying to all): " +
      "a number for every model, or model=tokens by model (comma-separated, a bare number for the models not named: " +
      "gpt-4o-mini=2000000,gpt-4o=90000,500000; each an integer from 1 to 1e12). Shards are cut to fit (re-cut when the limit falls " +
      "after they were planned) and wait for headroom. The run records it: resume and retry keep it unless given again " +
      "(default: learned from the provider, a token_limit_exceeded failure teaches the limit)"
  ),
  Options.mapEffect((text) =>
    Either.match(EnqueuedTokens.parseLimits(text), {
      onLeft: (why) => Effect.fail(ValidationError.invalidValue(HelpDoc.p(why))),
      onRight: (limits) => Effect.succeed(limits)
    })
  ),
  Options.optional
)

export const maxBatches = Options.text("max-batches").pipe(
  Options.withPseudoName("N|MODEL=N,…"),
  Options.withDescription(
    "batches of one provider and model in flight at once (created and not ended), across the runs sharing this cache directory " +
      "(with --cluster: all runs of the cluster, the lowest cap given applying to all): a number for every model, or model=N by model " +
      "as for --max-enqueued-tokens. A shard waits for a free place. The run records it: resume and retry keep it unless given again " +
      "(default: no cap beyond --concurrency per run)"
  ),
  Options.mapEffect((text) =>
    Either.match(EnqueuedTokens.parseLimits(text, "--max-batches", "batches"), {
      onLeft: (why) => Effect.fail(ValidationError.invalidValue(HelpDoc.p(why))),
      onRight: (limits) => Effect.succeed(limits)
    })
  ),
  Options.optional
)

export const outputTokens = bounded(
  "output-tokens",
  ranges.outputTokens,
  "output tokens per request assumed by estimates and --budget",
  "the stage's max_tokens, else 100"
).pipe(Options.optional)

export const outputFileWait = bounded(
  "output-file-wait",
  ranges.outputFileWaitSeconds,
  "how long a batch that completed without an output file is waited for; then its rows count as missing and are resubmitted",
  "600"
).pipe(Options.withDefault(600))

/** `sluice preview -n N` (and `run --preview -n N`): how many of the source's first rows the preview runs. */
export const previewRows = bounded(
  "rows",
  ranges.previewRows,
  "how many of the source's first rows to run online",
  "20"
).pipe(Options.withAlias("n"), Options.optional)

/** A price table merged over the built-in one; `$SLUICE_PRICES` when not given (see Pricing.load). */
/** `sluice ui`: the port on 127.0.0.1 (0: a free one). */
export const uiPort = bounded("port", ranges.port, "the port to listen on, on 127.0.0.1; 0 takes any free port", "0").pipe(Options.withDefault(0))

/** `--json`: the result (and a failure) as JSON on stdout. */
export const json = Options.boolean("json").pipe(Options.withDescription("print machine-readable JSON on stdout"))

/**
 * `--cluster` of the commands that read runs (`status`, `report`, `ui`, `gc`): the database that
 * holds the journal of a run started on a cluster (JournalStore.ts).
 */
export const clusterJournal = Options.redacted("cluster").pipe(
  Options.withPseudoName("postgres://…"),
  Options.withDescription(`the cluster's PostgreSQL database, where a run started with \`run --cluster\` keeps its journal (default: $${databaseUrlVariable})`),
  Options.optional
)

/** The run directory a command reads or continues. */
export const runDirArg = Args.directory({ name: "run-dir", exists: "yes" }).pipe(Args.withDescription("the run directory"))

export const prices = Options.file("prices").pipe(
  Options.withDescription(
    "a JSON file of prices and context windows by model (the shape of data/prices.json), merged over the built-in table; default $SLUICE_PRICES"
  ),
  Options.optional
)

// ---------------------------------------------------------------------------------------------
// The emulator
// ---------------------------------------------------------------------------------------------

const rate = (name: string, description: string) => bounded(name, { min: 0, max: 1 }, description, "0").pipe(Options.withDefault(0))
/** Emulated durations: up to a week. */
const millis = (name: string, description: string, byDefault: string, min = 0) =>
  bounded(name, { min, max: 604_800_000, integer: true, unit: "ms" }, description, byDefault)

export const emulator = {
  port: bounded("port", ranges.port, "port on 127.0.0.1", "0, a free port").pipe(Options.withDefault(0)),
  requestsPerSecond: bounded("requests-per-second", { min: 0, above: true, max: 1_000_000_000 }, "processing speed per batch", "1000").pipe(
    Options.withDefault(1000)
  ),
  validatingMs: millis("validating-ms", "how long a batch stays validating", "200").pipe(Options.withDefault(200)),
  finalizingMs: millis("finalizing-ms", "how long a batch stays finalizing", "200").pipe(Options.withDefault(200)),
  expireAfterMs: millis("expire-after-ms", "completion window", "24 hours", 1).pipe(Options.optional),
  errorRate: rate("error-rate", "fraction of requests that fail (succeed when resubmitted)"),
  rateLimitRate: rate("rate-limit-rate", "fraction of API calls answered 429 with Retry-After"),
  serverErrorRate: rate("server-error-rate", "fraction of API calls answered 500/502/503"),
  resetRate: rate("reset-rate", "fraction of API calls whose connection is reset"),
  dropLines: rate("drop-lines", "fraction of result lines silently left out"),
  lateOutputFileMs: millis("late-output-file-ms", "completed batches show no output file for this long", "0").pipe(Options.withDefault(0)),
  invalidJsonRate: rate("invalid-json-rate", "fraction of first-time structured answers that break their schema"),
  // The real-time endpoints (chat completions, embeddings, responses, messages, generateContent).
  rpmLimit: bounded("rpm-limit", { min: 0, above: true, max: 1_000_000_000 }, "real-time requests per minute per model; over it a 429 with Retry-After", "none").pipe(
    Options.optional
  ),
  tpmLimit: bounded("tpm-limit", { min: 0, above: true, max: 1_000_000_000_000 }, "real-time tokens (input + output) per minute per model", "none").pipe(
    Options.optional
  ),
  // The batch API: the organisation's enqueued-token limit (OpenAI's token_limit_exceeded).
  enqueuedTokenLimit: bounded(
    "enqueued-token-limit",
    ranges.maxEnqueuedTokens,
    "input tokens of a model's batches not yet ended at most; a batch over it fails validation with token_limit_exceeded",
    "none"
  ).pipe(Options.optional),
  enqueuedLimitOnCreate: Options.boolean("enqueued-limit-on-create").pipe(
    Options.withDescription("over --enqueued-token-limit, refuse the create at once (HTTP 400 token_limit_exceeded, no batch made), as Azure's fail-fast queueing does")
  ),
  approximateTokens: Options.boolean("approximate-tokens").pipe(
    Options.withDescription("count prompt tokens at about four characters a token instead of with the model's tokenizer (a quarter of its CPU at full speed: for benchmarks)")
  ),
  noRateLimitHeaders: Options.boolean("no-rate-limit-headers").pipe(
    Options.withDescription("real-time answers carry no rate-limit headers and the limits' 429s no Retry-After, like a vLLM or llama.cpp server")
  ),
  latencyMs: millis("latency-ms", "delay of every real-time answer", "0").pipe(Options.withDefault(0)),
  latencyPerTokenMs: bounded("latency-per-token-ms", { min: 0, max: 60_000, unit: "ms" }, "added delay per output token of a real-time answer", "0").pipe(
    Options.withDefault(0)
  )
}
