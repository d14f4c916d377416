/**
 * The runner's modules import one way: no module reaches itself through its imports (type-only
 * and dynamic imports count too — a cycle of types is still a circle to read). The graph is
 * read from the sources with TypeScript's own import scanner, so comments and strings do not fool it.
 */
import { readdirSync, readFileSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import ts from "typescript"
import { describe, expect, it } from "vitest"

const srcDir = resolve(dirname(fileURLToPath(import.meta.url)), "../src")

const sources = (dir: string): Array<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : []
  )

/** Module → the modules of the same tree it imports (relative specifiers, `.js` meaning `.ts`). */
const importGraph = (dir: string): Map<string, Array<string>> => {
  const graph = new Map<string, Array<string>>()
  for (const file of sources(dir)) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, "utf8"), true, true)
    const targets = importedFiles
      .map((i) => i.fileName)
      .filter((name) => name.startsWith("."))
      .map((name) => relative(dir, resolve(dirname(file), name.replace(/\.js$/, ".ts"))))
    graph.set(relative(dir, file), targets)
  }
  return graph
}

/** The strongly connected components of more than one module (or a module importing itself). */
const cycles = (graph: ReadonlyMap<string, ReadonlyArray<string>>): Array<Array<string>> => {
  let next = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: Array<string> = []
  const onStack = new Set<string>()
  const found: Array<Array<string>> = []
  const visit = (v: string): void => {
    index.set(v, next)
    low.set(v, next)
    next++
    stack.push(v)
    onStack.add(v)
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue
      if (!index.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v)!, low.get(w)!))
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!))
    }
    if (low.get(v) === index.get(v)) {
      const component: Array<string> = []
      let w: string
      do {
        w = stack.pop()!
        onStack.delete(w)
        component.push(w)
      } while (w !== v)
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(component.sort())
    }
  }
  for (const v of graph.keys()) if (!index.has(v)) visit(v)
  return found
}

describe("import cycles", () => {
  it("finds a circle, and only a circle, in a graph built for it", () => {
    const graph = new Map([
      ["Runner.ts", ["Planner.ts", "RunEvent.ts"]],
      ["Planner.ts", ["Rows.ts"]],
      ["RunEvent.ts", ["Runner.ts"]],
      ["Rows.ts", []],
      ["Self.ts", ["Self.ts"]]
    ])
    expect(cycles(graph)).toEqual([["RunEvent.ts", "Runner.ts"], ["Self.ts"]])
    expect(cycles(new Map([["A.ts", ["B.ts"]], ["B.ts", []]]))).toEqual([])
  })

  it("reads the runner's real imports (the graph is not empty or cut short)", () => {
    const graph = importGraph(srcDir)
    expect(graph.get("Runner.ts")).toEqual(expect.arrayContaining(["Planner.ts", "Collector.ts", "RunEvent.ts", "RunSummary.ts"]))
    expect(graph.get("Collector.ts")).toContain("Rows.ts")
    // A dynamic import counts: the OTLP exporter is loaded only when asked for.
    expect(graph.get("Telemetry.ts")).toContain("internal/otlp.ts")
  })

  it("packages/runner/src has none", () => {
    expect(cycles(importGraph(srcDir))).toEqual([])
  })
})
