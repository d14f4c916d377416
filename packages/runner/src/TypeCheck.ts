/**
 * Type-checks a pipeline file before anything is planned or sent, with TypeScript's compiler
 * API: tsx, which loads the file, only strips types, so `user: r.txt` would otherwise run and
 * send every request without its user turn.
 *
 * The program is rooted at the pipeline file alone (its imports follow) and uses the compiler
 * options of the nearest tsconfig.json above it (its `files`/`include` are ignored), or strict
 * NodeNext defaults without one. Only the user's own sources are reported: not declaration
 * files, not packages under node_modules.
 *
 * Building a program that pulls in effect's types takes seconds, so a check that passed is
 * remembered: one small JSON file per pipeline file in `$SLUICE_TYPECHECK_CACHE_DIR`
 * (default `<os temp dir>/sluice-typecheck-<uid>`), listing the SHA-256 of every file the
 * program read (sources, declarations, the tsconfig chain, the nearest package.json) and the
 * TypeScript version. While none of them changed, the check is not run again — nor is
 * TypeScript loaded. The directory is created 0700, and a directory that another user owns or
 * can write (someone else's in the shared temp directory) is neither read nor written.
 */
import { Effect, Schema } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { dirname, join, relative, resolve } from "node:path"
import type * as Ts from "typescript"
import * as PrivateFiles from "./internal/PrivateFiles.js"

export class PipelineTypeError extends Schema.TaggedError<PipelineTypeError>()("PipelineTypeError", {
  file: Schema.String,
  /** One line each, `file:line:col message` (continuation lines indented). */
  diagnostics: Schema.Array(Schema.String)
}) {
  override get message(): string {
    const n = this.diagnostics.length
    return (
      `${this.file} does not compile (${n} error${n === 1 ? "" : "s"}; --no-typecheck skips the check):\n` +
      this.diagnostics.join("\n")
    )
  }
}

export class TypeCheckUnavailable extends Schema.TaggedError<TypeCheckUnavailable>()("TypeCheckUnavailable", {
  file: Schema.String,
  /** `missing`: there is no such file, and skipping the check would not help. */
  reason: Schema.Literal("missing", "noTypeScript"),
  description: Schema.String
}) {
  override get message(): string {
    return this.reason === "missing"
      ? `${this.file}: ${this.description}`
      : `${this.file}: cannot type-check: ${this.description} (--no-typecheck skips the check)`
  }
}

/** Whether a command type-checks: not with `--no-typecheck`, nor with SLUICE_TYPECHECK=off. */
export const enabled = (noTypecheck: boolean): boolean => !noTypecheck && process.env["SLUICE_TYPECHECK"] !== "off"

/** Where passed checks are remembered: $SLUICE_TYPECHECK_CACHE_DIR, else a per-user directory in the OS temp dir. */
export const defaultCacheDir = (): string => {
  const dir = process.env["SLUICE_TYPECHECK_CACHE_DIR"]?.trim()
  if (dir !== undefined && dir !== "") return dir
  const uid = process.getuid?.()
  return join(tmpdir(), uid === undefined ? "sluice-typecheck" : `sluice-typecheck-${uid}`)
}

export interface CheckOptions {
  /** Where passed checks are remembered (default `defaultCacheDir()`); false: always check. */
  readonly cacheDir?: string | false
}

export interface CheckResult {
  /** True when an earlier check of the same files passed, and nothing was compiled. */
  readonly cached: boolean
  /** The user's own source files checked: the pipeline file and what it imports outside node_modules. */
  readonly sources: number
  /** The tsconfig.json whose options were used, or undefined for the defaults. */
  readonly config: string | undefined
}

/** Compiler options without a tsconfig.json: what `sluice init` writes and Node runs. */
export const defaultOptions = (ts: typeof Ts): Ts.CompilerOptions => ({
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  strict: true,
  skipLibCheck: true,
  resolveJsonModule: true,
  // tsx (and Node's type stripping) load `./x.ts` imports; only allowed without emit.
  allowImportingTsExtensions: true,
  noEmit: true
})

/** The tsconfig.json nearest above `dir` (itself included), if any. */
export const nearestConfig = (dir: string): string | undefined => {
  for (let at = resolve(dir); ; at = dirname(at)) {
    const candidate = join(at, "tsconfig.json")
    if (existsSync(candidate)) return candidate
    if (dirname(at) === at) return undefined
  }
}

const nearestPackageJson = (dir: string): string | undefined => {
  for (let at = resolve(dir); ; at = dirname(at)) {
    const candidate = join(at, "package.json")
    if (existsSync(candidate)) return candidate
    if (dirname(at) === at) return undefined
  }
}

const sha256 = (data: string | Uint8Array): string => createHash("sha256").update(data).digest("hex")

/** The hash of a file's text as the compiler reads it (UTF-8, without a byte order mark). */
const textHash = (text: string): string => sha256(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text)

const fileHash = (file: string): string | undefined => {
  try {
    return textHash(readFileSync(file, "utf8"))
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// The cache of passed checks
// ---------------------------------------------------------------------------------------------

const CacheEntry = Schema.Struct({
  version: Schema.Literal(1),
  typescript: Schema.String,
  pipeline: Schema.String,
  config: Schema.NullOr(Schema.String),
  sources: Schema.Number,
  /** [absolute path, sha256] of every file the program read. */
  files: Schema.Array(Schema.Tuple(Schema.String, Schema.String))
})
type CacheEntry = typeof CacheEntry.Type

const decodeEntry = Schema.decodeUnknownOption(Schema.parseJson(CacheEntry))

const requireHere = createRequire(import.meta.url)

/** The installed TypeScript's version, from its package.json (without loading the compiler). */
const typescriptVersion = (): string | undefined => {
  try {
    return (JSON.parse(readFileSync(requireHere.resolve("typescript/package.json"), "utf8")) as { version?: string }).version
  } catch {
    return undefined
  }
}

const entryPath = (cacheDir: string, pipeline: string, config: string | undefined): string =>
  join(cacheDir, `${sha256(`${pipeline}\n${config ?? ""}`).slice(0, 32)}.json`)

/** The remembered check, when every file it read is as it was then. */
const freshEntry = (path: string, key: { pipeline: string; config: string | undefined; typescript: string }): CacheEntry | undefined => {
  // The default directory is in the shared temp directory: trust it only if no one else can write it.
  if (!PrivateFiles.isOwnDirectory(dirname(path))) return undefined
  let text: string
  try {
    text = readFileSync(path, "utf8")
  } catch {
    return undefined
  }
  const entry = decodeEntry(text)
  if (entry._tag === "None") return undefined
  const e = entry.value
  if (e.pipeline !== key.pipeline || e.config !== (key.config ?? null) || e.typescript !== key.typescript) return undefined
  return e.files.every(([file, hash]) => fileHash(file) === hash) ? e : undefined
}

/** Best effort: a cache that cannot be written costs the next run a check, nothing else. */
const remember = (path: string, entry: CacheEntry): void => {
  try {
    PrivateFiles.makeDirectorySync(dirname(path))
    if (!PrivateFiles.isOwnDirectory(dirname(path))) return
    // A new file ("wx" follows no link another user may have planted there), 0600.
    const tmp = `${path}.${process.pid}-${randomBytes(4).toString("hex")}.tmp`
    writeFileSync(tmp, JSON.stringify(entry), { flag: "wx", mode: PrivateFiles.fileMode })
    renameSync(tmp, path)
  } catch {
    // ignored: see above
  }
}

// ---------------------------------------------------------------------------------------------
// Compiling
// ---------------------------------------------------------------------------------------------

interface Compiled {
  readonly diagnostics: ReadonlyArray<string>
  /** [path, hash] of every file the program read, for the cache. */
  readonly files: ReadonlyArray<readonly [string, string]>
  readonly sources: number
}

/**
 * `file:line:col message (TScode)`, the file relative to the current directory; `file: …` for a
 * diagnostic without a position (`fallback` names the file when the diagnostic names none).
 */
export const formatDiagnostic = (ts: typeof Ts, d: Ts.Diagnostic, fallback?: string, cwd = process.cwd()): string => {
  const text = `${ts.flattenDiagnosticMessageText(d.messageText, "\n").replace(/\n/g, "\n  ")} (TS${d.code})`
  const fileName = d.file?.fileName ?? fallback
  if (fileName === undefined) return text
  const file = relative(cwd, fileName) || fileName
  if (d.file === undefined || d.start === undefined) return `${file}: ${text}`
  const { line, character } = d.file.getLineAndCharacterOfPosition(d.start)
  return `${file}:${line + 1}:${character + 1} ${text}`
}

/** "No inputs were found": the pipeline is the root whatever `include` says. */
const noInputs = 18003

const parseConfig = (ts: typeof Ts, path: string, errors: Array<Ts.Diagnostic>): Ts.ParsedCommandLine | undefined =>
  ts.getParsedCommandLineOfConfigFile(path, undefined, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => void errors.push(d)
  })

const configFilesOf = (parsed: Ts.ParsedCommandLine, path: string): Array<string> => [
  path,
  ...(((parsed.options["configFile"] as Ts.TsConfigSourceFile | undefined)?.extendedSourceFiles ?? []) as ReadonlyArray<string>)
]

/**
 * The compiler options for `pipeline` from the tsconfig.json at `path`. A solution-style
 * config (`files: []` and references) lends the options of the referenced project that
 * includes the pipeline file, as an editor does.
 */
const optionsFrom = (ts: typeof Ts, path: string, pipeline: string) => {
  const errors: Array<Ts.Diagnostic> = []
  const parsed = parseConfig(ts, path, errors)
  if (parsed === undefined) return { options: defaultOptions(ts), errors, configFiles: [path] }
  const configFiles = configFilesOf(parsed, path)
  let chosen = parsed
  const includes = (p: Ts.ParsedCommandLine) => p.fileNames.some((f) => resolve(f) === pipeline)
  if (!includes(parsed)) {
    for (const reference of parsed.projectReferences ?? []) {
      const referencePath = ts.resolveProjectReferencePath(reference)
      if (!existsSync(referencePath)) continue
      const referenced = parseConfig(ts, referencePath, [])
      if (referenced !== undefined && includes(referenced)) {
        chosen = referenced
        configFiles.push(...configFilesOf(referenced, referencePath))
        break
      }
    }
  }
  // The JSON's own syntax errors, then what its options say.
  errors.push(...ts.getConfigFileParsingDiagnostics(chosen).filter((d) => d.code !== noInputs))
  // Checking emits nothing: drop what only matters to a build (composite demands that every
  // file be listed in the config, which a program rooted at one file never satisfies).
  const options: Ts.CompilerOptions = { ...chosen.options, noEmit: true, composite: false, incremental: false }
  delete options.tsBuildInfoFile
  delete options.emitDeclarationOnly
  return { options, errors, configFiles }
}

const compile = (ts: typeof Ts, pipeline: string, config: string | undefined): Compiled => {
  const { options, errors, configFiles } =
    config === undefined ? { options: defaultOptions(ts), errors: [], configFiles: [] } : optionsFrom(ts, config, pipeline)
  // A JavaScript pipeline file is a root the compiler takes only with allowJs; it is then
  // checked for syntax, and for types where the config (or `// @ts-check`) asks for it.
  const javascript = /\.[cm]?jsx?$/i.test(pipeline)
  const program = ts.createProgram({ rootNames: [pipeline], options: javascript ? { ...options, allowJs: true } : options })
  const own = program
    .getSourceFiles()
    .filter((sf) => !sf.isDeclarationFile && !program.isSourceFileFromExternalLibrary(sf) && !/[\\/]node_modules[\\/]/.test(sf.fileName))
  const syntactic = own.flatMap((sf) => program.getSyntacticDiagnostics(sf))
  const isError = (d: Ts.Diagnostic) => d.category === ts.DiagnosticCategory.Error
  const diagnostics = [
    ...errors.filter(isError).map((d) => formatDiagnostic(ts, d, config)),
    ...[
      ...program.getOptionsDiagnostics(),
      ...program.getGlobalDiagnostics(),
      // Like tsc: type errors of a file that does not parse are noise.
      ...(syntactic.length > 0 ? syntactic : own.flatMap((sf) => program.getSemanticDiagnostics(sf)))
    ]
      .filter(isError)
      .map((d) => formatDiagnostic(ts, d))
  ]
  // Sources are hashed as the compiler read them (a file edited meanwhile is checked again
  // next time); the configs and package.json (its "type" decides ESM) from disk.
  const files = new Map(program.getSourceFiles().map((sf) => [resolve(sf.fileName), textHash(sf.text)] as const))
  const packageJson = nearestPackageJson(dirname(pipeline))
  for (const f of [...configFiles, ...(packageJson === undefined ? [] : [packageJson])]) {
    const hash = fileHash(resolve(f))
    if (hash !== undefined) files.set(resolve(f), hash)
  }
  return { diagnostics, files: [...files], sources: own.length }
}

/** The compiler, loaded on first use only: `sluice --help` and `status` never pay for it. */
export const loadTypeScript = async (): Promise<typeof Ts> => {
  const module = (await import("typescript")) as typeof Ts & { readonly default?: typeof Ts }
  return module.default ?? module
}

/**
 * Type-checks the pipeline file `file`: fails with `PipelineTypeError` (its diagnostics as
 * `file:line:col message`) when it does not compile.
 */
export const check = (file: string, options: CheckOptions = {}): Effect.Effect<CheckResult, PipelineTypeError | TypeCheckUnavailable> =>
  Effect.gen(function* () {
    const pipeline = resolve(file)
    if (!existsSync(pipeline)) return yield* new TypeCheckUnavailable({ file, reason: "missing", description: "no such file" })
    const config = nearestConfig(dirname(pipeline))
    const cacheDir = options.cacheDir ?? defaultCacheDir()
    const version = typescriptVersion()
    const cachePath = cacheDir === false || version === undefined ? undefined : entryPath(cacheDir, pipeline, config)
    if (cachePath !== undefined && version !== undefined) {
      const hit = freshEntry(cachePath, { pipeline, config, typescript: version })
      if (hit !== undefined) return { cached: true, sources: hit.sources, config } satisfies CheckResult
    }
    // Seconds of silence otherwise, the first time.
    yield* Effect.logInfo(`type-checking ${file}`)
    const ts = yield* Effect.tryPromise({
      try: loadTypeScript,
      catch: (e) => new TypeCheckUnavailable({ file, reason: "noTypeScript", description: `TypeScript is not installed (${e instanceof Error ? e.message.split("\n")[0] : String(e)})` })
    })
    const compiled = yield* Effect.sync(() => compile(ts, pipeline, config))
    if (compiled.diagnostics.length > 0) return yield* new PipelineTypeError({ file, diagnostics: compiled.diagnostics })
    if (cachePath !== undefined) {
      remember(cachePath, { version: 1, typescript: ts.version, pipeline, config: config ?? null, sources: compiled.sources, files: compiled.files })
    }
    return { cached: false, sources: compiled.sources, config } satisfies CheckResult
  })
