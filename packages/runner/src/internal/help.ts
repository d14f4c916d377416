/**
 * `sluice --help` and `sluice <command> --help`, rendered by sluice rather than by @effect/cli,
 * whose help always carries ANSI styles, shows a subcommand's usage without the program
 * (`$ run …`) and leaves out plain defaults. The content still comes from the command
 * definitions (descriptions, arguments, options), so a new option appears by itself: this
 * module reads them into a `ProgramHelp`, helpText.ts lays that out.
 */
import { CliConfig, Command, HelpDoc, Span, Usage } from "@effect/cli"
import * as HelpText from "./helpText.js"
import type { CommandHelp, Entry, ProgramHelp, RenderOptions } from "./helpText.js"

export { colorEnabled, requested } from "./helpText.js"

// Commands of any type: the help reads only their descriptors.
type AnyCommand = Command.Command<any, any, any, any>

export interface Program {
  readonly name: string
  readonly version: string
  readonly description: string
  readonly commands: ReadonlyArray<AnyCommand>
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

const nameOf = (command: AnyCommand): string => [...Command.getNames(command)][0] ?? ""

/** What the help shows of `command`: its usage, description, arguments and options (built-ins left out). */
const describeCommand = (command: AnyCommand): CommandHelp => {
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
  return {
    name: nameOf(command),
    usage: Usage.enumerate(Command.getUsage(command), CliConfig.defaultConfig).map(spanText),
    description: description.join(" "),
    arguments: args,
    options
  }
}

/** The program's help as data: what the build stores in dist/help.json for QuickAnswer.ts. */
export const describe = (program: Program): ProgramHelp => ({
  name: program.name,
  version: program.version,
  description: program.description,
  commands: program.commands.map(describeCommand)
})

/** Help for the program (no command named) or for the command `args` name first. */
export const render = (program: Program, args: ReadonlyArray<string>, options: RenderOptions): string =>
  HelpText.render(describe(program), args, options)

