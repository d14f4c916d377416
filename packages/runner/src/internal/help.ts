/**
 * `sluice --help` and `sluice <command> --help`, rendered here rather than by @effect/cli,
 * whose help always carries ANSI styles, shows a subcommand's usage without the program
 * (`$ run …`) and leaves out plain defaults. The content still comes from the command
 * definitions (descriptions, arguments, options), so a new option appears by itself.
 */
import { CliConfig, Command, HelpDoc, Span, Usage } from "@effect/cli"

/** Whether to style output for `stream`: FORCE_COLOR, then NO_COLOR (https://no-color.org), then a terminal. */
export const colorEnabled = (stream: { readonly isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean => {
  const force = env["FORCE_COLOR"]
  if (force !== undefined && force !== "") return force !== "0" && force !== "false"
  if (env["NO_COLOR"] !== undefined && env["NO_COLOR"] !== "") return false
  if (env["TERM"] === "dumb") return false
  return stream.isTTY === true
}

/** True when the arguments (after the program) ask for help: `-h` or `--help` before any `--`. */
export const requested = (args: ReadonlyArray<string>): boolean => {
  for (const arg of args) {
    if (arg === "--") return false
    if (arg === "--help" || arg === "-h") return true
  }
  return false
}

// Commands of any type: the help reads only their descriptors.
type AnyCommand = Command.Command<any, any, any, any>

export interface Program {
  readonly name: string
  readonly version: string
  readonly description: string
  readonly commands: ReadonlyArray<AnyCommand>
}

export interface RenderOptions {
  readonly color: boolean
  /** Wrap at this many columns. */
  readonly width: number
}

const spanText = (span: Span.Span): string => {
  switch (span._tag) {
    case "Text":
    case "URI":
      return span.value
    case "Sequence":
      return spanText(span.left) + spanText(span.right)
    default:
      return spanText(span.value)
  }
}

/** The blocks of a help document in order, sequences flattened. */
const blocks = (doc: HelpDoc.HelpDoc): Array<HelpDoc.HelpDoc> =>
  doc._tag === "Sequence" ? [...blocks(doc.left), ...blocks(doc.right)] : doc._tag === "Empty" ? [] : [doc]

/** The text of a document's paragraphs, in order. */
const paragraphs = (doc: HelpDoc.HelpDoc): Array<string> =>
  blocks(doc).flatMap((b) => (b._tag === "Paragraph" ? [spanText(b.value)] : b._tag === "Enumeration" ? b.elements.flatMap(paragraphs) : []))

/** A plain-text rendering of any help document (for error messages). */
export const docText = (doc: HelpDoc.HelpDoc): string => paragraphs(doc).join(" ")

interface Entry {
  readonly term: string
  readonly text: string
}

interface Sections {
  readonly description: string
  readonly arguments: Array<Entry>
  readonly options: Array<Entry>
}

/**
 * An option's or argument's help is its type ("An integer.", always first), the descriptions
 * given in the command definition, and @effect/cli's "This setting is optional." — the type is
 * in the usage already and every option is optional, so only the descriptions are kept.
 */
const entryText = (doc: HelpDoc.HelpDoc): string =>
  paragraphs(doc)
    .slice(1)
    .map((p) => p.replace(/^This setting is optional\.\s*(Defaults to: (.*))?$/, (_, __, value: string | undefined) => (value === undefined ? "" : `(default ${value})`)))
    .filter((p) => p !== "")
    .join(" ")

/**
 * @effect/cli's built-in options (help, version, log level, completions, wizard) turn up in
 * some commands' help; the help lists them once, itself.
 */
const builtIns = new Set(["--completions", "--log-level", "(-h,", "-h,", "--help", "--wizard", "--version"])

const sections = (command: AnyCommand): Sections => {
  let header = ""
  const description: Array<string> = []
  const args: Array<Entry> = []
  const options: Array<Entry> = []
  for (const block of blocks(Command.getHelp(command, CliConfig.defaultConfig))) {
    if (block._tag === "Header") header = spanText(block.value)
    else if (block._tag === "Paragraph" && header === "DESCRIPTION") description.push(spanText(block.value))
    else if (block._tag === "DescriptionList") {
      const into = header === "ARGUMENTS" ? args : header === "OPTIONS" ? options : undefined
      for (const [term, doc] of block.definitions) {
        const text = spanText(term)
        if (!builtIns.has(text.split(" ")[0]!)) into?.push({ term: text, text: entryText(doc) })
      }
    }
  }
  return { description: description.join(" "), arguments: args, options }
}

/** Words of `text` in lines of at most `width` columns (a longer word gets a line of its own). */
const wrap = (text: string, width: number): Array<string> => {
  const lines: Array<string> = []
  let line = ""
  for (const word of text.split(/\s+/).filter((w) => w !== "")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line)
      line = word
    } else {
      line = line === "" ? word : `${line} ${word}`
    }
  }
  if (line !== "") lines.push(line)
  return lines
}

/** `term` in a column, `text` wrapped beside it; a long term puts the text on the next line. */
const table = (entries: ReadonlyArray<Entry>, width: number): Array<string> => {
  const column = Math.min(30, Math.max(...entries.map((e) => e.term.length)) + 4)
  const out: Array<string> = []
  for (const { term, text } of entries) {
    const lines = wrap(text, Math.max(20, width - column))
    const first = `  ${term}`
    if (first.length + 2 <= column && lines.length > 0) {
      out.push(first.padEnd(column) + lines[0])
      for (const l of lines.slice(1)) out.push(" ".repeat(column) + l)
    } else {
      out.push(first)
      for (const l of lines) out.push(" ".repeat(column) + l)
    }
  }
  return out
}

/** The usage line of a command, prefixed with the program: `sluice run [--run-dir directory] … <pipeline.ts>`. */
const usage = (program: string, command: AnyCommand, width: number): Array<string> => {
  const spans = Usage.enumerate(Command.getUsage(command), CliConfig.defaultConfig)
  return spans.flatMap((span) => {
    // Wrap between bracketed groups, never inside one.
    const parts = spanText(span).match(/\[[^\]]*\]|<[^>]*>|\S+/g) ?? []
    const lead = `${program} ${parts[0] ?? ""}`
    const indent = " ".repeat(Math.min(lead.length + 1, 24))
    const lines: Array<string> = []
    let line = lead
    for (const part of parts.slice(1)) {
      if (line.length + 1 + part.length > width && line.trim() !== "") {
        lines.push(line)
        line = indent + part
      } else {
        line = `${line} ${part}`
      }
    }
    lines.push(line)
    return lines
  })
}

const nameOf = (command: AnyCommand): string => [...Command.getNames(command)][0] ?? ""

const styled = (options: RenderOptions) => (header: string): string => (options.color ? `\x1b[1m${header}\x1b[0m` : header)

/** Help for the program (no command named) or for the command `args` name first. */
export const render = (program: Program, args: ReadonlyArray<string>, options: RenderOptions): string => {
  const bold = styled(options)
  const names = new Map(program.commands.map((c) => [nameOf(c), c]))
  const command = args.map((a) => names.get(a)).find((c) => c !== undefined)
  const width = Math.max(60, options.width)
  if (command !== undefined) {
    const s = sections(command)
    const help: Array<string> = [bold("Usage:"), ...usage(program.name, command, width).map((l) => `  ${l}`), ""]
    if (s.description !== "") help.push(...wrap(s.description, width), "")
    if (s.arguments.length > 0) help.push(bold("Arguments:"), ...table(s.arguments, width), "")
    const builtIn: Entry = { term: "-h, --help", text: "show this help" }
    help.push(bold("Options:"), ...table([...s.options, builtIn], width))
    return help.join("\n")
  }
  const commands = program.commands.map((c) => {
    const s = sections(c)
    const positional = s.arguments.map((a) => a.term).join(" ")
    return { term: `${program.name} ${nameOf(c)}${positional === "" ? "" : ` ${positional}`}`, text: s.description }
  })
  return [
    `${program.name} ${program.version}: ${program.description}`,
    "",
    bold("Usage:"),
    `  ${program.name} <command> [options]`,
    "",
    bold("Commands:"),
    ...table(commands, width),
    "",
    bold("Options:"),
    ...table(
      [
        { term: "-h, --help", text: "show help: of the program, or of a command (`sluice run --help`)" },
        { term: "--version", text: "print the version" },
        { term: "--log-level LEVEL", text: "all, trace, debug, info, warning, error, fatal or none (default info)" }
      ],
      width
    ),
    "",
    `Run \`${program.name} <command> --help\` for a command's arguments and options.`
  ].join("\n")
}
