/*
 * The page of `sluice report` (static: the data is in the page) and `sluice ui` (live: the data
 * comes from the server's API, and a new view arrives by server-sent events). Plain browser
 * JavaScript; uPlot (inlined before this script) draws the charts. Nothing is fetched from the
 * network in static mode.
 *
 * window.SLUICE_DATA is
 *   { mode: "static", view, rows, raws, sampled: { shown, of } }   or   { mode: "live", token, view? }
 */
;(function () {
  "use strict"
  var DATA = window.SLUICE_DATA
  var PAGE_SIZE = 50

  // ---------------------------------------------------------------------------------------
  // Data sources: the same three questions, answered from the page or from the server.
  // ---------------------------------------------------------------------------------------

  /** Rows of the embedded sample, filtered and searched in the browser. */
  function staticSource(data) {
    function matches(row, q) {
      if (q.status && row.status !== q.status) return false
      if (q.failureClass && (row.failure === null || row.failure.class !== q.failureClass)) return false
      if (q.stage && row.stage !== q.stage) return false
      if (q.q) {
        var needle = q.q.toLowerCase()
        if (row.key !== null && row.key.toLowerCase().indexOf(needle) >= 0) return true
        if (row.customId.toLowerCase().indexOf(needle) >= 0) return true
        return (text(row.input) + "\n" + text(row.output)).toLowerCase().indexOf(needle) >= 0
      }
      return true
    }
    return {
      live: false,
      view: function () { return Promise.resolve(data.view) },
      rows: function (q) {
        var all = data.rows.filter(function (r) { return matches(r, q) })
        return Promise.resolve({ offset: q.offset, limit: q.limit, total: all.length, rows: all.slice(q.offset, q.offset + q.limit) })
      },
      raw: function (customId) {
        return Promise.resolve(Object.prototype.hasOwnProperty.call(data.raws || {}, customId) ? data.raws[customId] : null)
      },
      subscribe: function () {}
    }
  }

  /** The API of `sluice ui` on the page's own origin; every URL carries the token. */
  function liveSource(data) {
    function url(path, params) {
      var search = new URLSearchParams(params || {})
      search.set("token", data.token)
      return path + "?" + search.toString()
    }
    function get(path, params) {
      return fetch(url(path, params)).then(function (r) {
        if (r.status === 404) return null
        if (!r.ok) throw new Error(path + ": HTTP " + r.status)
        return r.json()
      })
    }
    return {
      live: true,
      view: function () { return get("/api/view") },
      rows: function (q) {
        var params = { offset: String(q.offset), limit: String(q.limit) }
        if (q.status) params.status = q.status
        if (q.failureClass) params["class"] = q.failureClass
        if (q.stage) params.stage = q.stage
        if (q.q) params.q = q.q
        return get("/api/rows", params)
      },
      raw: function (customId) { return get("/api/raw", { custom_id: customId }) },
      subscribe: function (onView) {
        var events = new EventSource(url("/api/events"))
        events.addEventListener("view", function (e) { onView(JSON.parse(e.data)) })
      }
    }
  }

  var source = DATA.mode === "live" ? liveSource(DATA) : staticSource(DATA)

  // ---------------------------------------------------------------------------------------
  // Helpers
  // ---------------------------------------------------------------------------------------

  function $(id) { return document.getElementById(id) }
  function el(tag, attrs, children) {
    var node = document.createElement(tag)
    for (var k in attrs || {}) {
      if (k === "text") node.textContent = attrs[k]
      else if (k === "onclick") node.addEventListener("click", attrs[k])
      else node.setAttribute(k, attrs[k])
    }
    ;(children || []).forEach(function (c) { if (c !== null && c !== undefined) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c) })
    return node
  }
  function text(value) {
    if (value === null || value === undefined) return ""
    return typeof value === "string" ? value : JSON.stringify(value, null, 2)
  }
  function num(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US") }
  function money(usd) {
    if (usd === null || usd === undefined) return "unpriced"
    if (usd === 0) return "$0.00"
    if (usd >= 1) return "$" + usd.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })
    if (usd < 0.000001) return "<$0.000001"
    var decimals = Math.min(6, Math.max(2, 1 - Math.floor(Math.log10(usd))))
    return "$" + usd.toFixed(decimals).replace(/(\.\d\d\d*?)0+$/, "$1")
  }
  function time(ms) { return ms === null ? "–" : new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") }
  function duration(ms) {
    if (ms === null || ms < 0) return "–"
    if (ms < 1000) return ms + " ms"
    var s = ms / 1000
    if (s < 60) return s.toFixed(1) + " s"
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s"
    return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min"
  }
  function sum(record) { return Object.keys(record).reduce(function (a, k) { return a + record[k] }, 0) }
  function chartWidth(node) { return Math.max(280, node.clientWidth - 4) }

  // ---------------------------------------------------------------------------------------
  // The views
  // ---------------------------------------------------------------------------------------

  function renderHeader(view) {
    var t = view.totals
    $("title").textContent = "sluice · " + view.pipeline
    $("meta").textContent =
      "run " + view.runId + " · " + view.runDir + " · " + (t.finished ? "finished" : "not finished") +
      " · " + (DATA.mode === "live" ? "live, updated " : "as of ") + time(view.at)
    var notice = $("notice")
    if (DATA.mode === "static" && DATA.sampled.shown < DATA.sampled.of) {
      notice.hidden = false
      notice.textContent =
        "Showing " + num(DATA.sampled.shown) + " of " + num(DATA.sampled.of) +
        " rows (a sample, with examples of every failure class); `sluice ui " + view.runDir + "` browses all."
    }
  }

  function renderTotals(view) {
    var t = view.totals
    var failed = sum(t.failed)
    var cards = [
      ["rows", "rows", num(t.rows), ""],
      ["succeeded", "succeeded", num(t.succeeded), "ok"],
      ["failed", "failed", num(failed), "fail"],
      ["pending", "pending", num(t.pending), "pending"],
      ["batches", "batches", num(t.batches), ""],
      ["tokens-in", "tokens in", num(t.usage.input), ""],
      ["tokens-out", "tokens out", num(t.usage.output), ""],
      ["spent", "spent", money(t.spent !== null ? t.spent : t.cost && t.cost.batch), ""],
      ["realtime", "at real-time prices", money(t.cost && t.cost.realtime), ""]
    ]
    if (t.fromCache > 0) cards.splice(4, 0, ["from-cache", "from cache", num(t.fromCache), ""])
    if (t.duplicates > 0) cards.splice(4, 0, ["duplicates", "duplicates", num(t.duplicates), ""])
    var box = $("totals")
    box.replaceChildren.apply(box, cards.map(function (c) {
      return el("div", { class: "card " + c[3] }, [
        el("div", { class: "label", text: c[1] }),
        el("div", { class: "value", "data-total": c[0], text: c[2] })
      ])
    }))
    var classes = Object.keys(t.failed).filter(function (k) { return t.failed[k] > 0 })
    $("totals-failed").textContent = classes.length === 0 ? "" :
      "failed by class: " + classes.map(function (k) { return k + " " + num(t.failed[k]) }).join(", ")
    $("prices").textContent = "prices of " + t.prices
  }

  var charts = {}
  function chart(name, container, opts, data) {
    if (charts[name]) charts[name].destroy()
    container.replaceChildren()
    charts[name] = new uPlot(opts, data, container)
  }

  function renderTimeline(view) {
    var box = $("rows-chart")
    var points = view.timeline
    if (points.length === 0) {
      box.replaceChildren(el("p", { class: "muted", text: "No times in this run's journal (it was written by an older sluice)." }))
      return
    }
    var data = [
      points.map(function (p) { return p.t / 1000 }),
      points.map(function (p) { return p.succeeded }),
      points.map(function (p) { return p.failed }),
      points.map(function (p) { return p.pending })
    ]
    chart("rows", box, {
      width: chartWidth(box), height: 240,
      scales: { x: { time: true } },
      series: [
        {},
        { label: "succeeded", stroke: "#2f9e62", width: 2, paths: uPlot.paths.stepped({ align: 1 }) },
        { label: "failed", stroke: "#d64545", width: 2, paths: uPlot.paths.stepped({ align: 1 }) },
        { label: "pending", stroke: "#8a94a6", width: 2, dash: [6, 4], paths: uPlot.paths.stepped({ align: 1 }) }
      ],
      axes: [{}, { label: "rows" }]
    }, data)
  }

  var stepNames = { planned: "planned", submitted: "submitted", in_progress: "in progress", ended: "ended", collected: "collected" }
  // What a shard is doing between one step and the next, as a bar segment.
  var segments = [["planned", "submitted", "waiting"], ["submitted", "in_progress", "queued"], ["in_progress", "ended", "running"], ["ended", "collected", "collecting"]]

  function renderShards(view) {
    var shards = view.shards
    var times = []
    shards.forEach(function (s) { s.steps.forEach(function (st) { if (st.t !== null) times.push(st.t) }) })
    // A shard still under way runs to now; a finished run's chart ends where its last shard did.
    var open = shards.some(function (s) { return s.collected === null && s.rejected === null })
    if (open) times.push(view.at)
    var start = times.length ? Math.min.apply(null, times) : 0
    var end = times.length ? Math.max.apply(null, times) : 1
    var span = Math.max(1, end - start)
    var body = shards.map(function (s) {
      var at = {}
      s.steps.forEach(function (st) { at[st.step] = st.t })
      var bar = el("div", { class: "bar" })
      segments.forEach(function (seg) {
        var from = at[seg[0]]
        if (from === undefined || from === null) return
        var to = at[seg[1]]
        // A step not reached yet: the segment runs to now.
        if (to === undefined || to === null) {
          if (s.collected !== null || s.rejected !== null) return
          to = view.at
        }
        var left = ((from - start) / span) * 100
        var width = Math.max(0.4, ((to - from) / span) * 100)
        bar.appendChild(el("div", { class: "seg " + seg[2], style: "left:" + left + "%;width:" + width + "%", title: stepNames[seg[0]] + " → " + stepNames[seg[1]] + ": " + duration(to - from) }))
      })
      var reached = s.steps.length ? stepNames[s.steps[s.steps.length - 1].step] : "–"
      var what = [s.mode === "online" ? el("span", { class: "badge", text: "online" }) : null]
      if (s.kind === "retry") what.push(el("span", { class: "badge retry", text: "retry of " + (s.parent || "failed rows") }))
      if (s.repairs > 0) what.push(el("span", { class: "badge retry", text: num(s.repairs) + (s.repairs === 1 ? " repair" : " repairs") }))
      var outcome = s.collected === null
        ? (s.rejected !== null ? "rejected: " + s.rejected : (s.status || ""))
        : num(s.collected.succeeded) + " ok, " + num(s.collected.failed) + " failed" + (s.collected.rescheduled ? ", " + num(s.collected.rescheduled) + " rescheduled" : "")
      return el("tr", { "data-shard": s.shard }, [
        el("td", {}, [el("div", { text: s.shard }), el("div", {}, what)]),
        el("td", { class: "muted", text: s.stage }),
        el("td", { class: "num", text: num(s.requests) }),
        el("td", { text: reached }),
        el("td", { class: "muted", text: outcome }),
        el("td", { style: "width:45%" }, [bar])
      ])
    })
    $("shards").replaceChildren(
      el("thead", {}, [el("tr", {}, ["shard", "stage", "requests", "step", "outcome", time(start) + " → " + time(end)].map(function (h, i) { return el("th", { class: i === 2 ? "num" : "", text: h }) }))]),
      el("tbody", {}, body)
    )
  }

  function renderSpend(view) {
    var rows = view.spend.map(function (s) {
      return el("tr", {}, [
        el("td", { text: s.stage }), el("td", { text: s.model }), el("td", { text: s.mode }),
        el("td", { class: "num", text: num(s.usage.input) }), el("td", { class: "num", text: num(s.usage.output) }),
        el("td", { class: "num", text: money(s.batch) }), el("td", { class: "num", text: money(s.realtime) }),
        el("td", { class: "num", text: money(s.spent) })
      ])
    })
    var t = view.totals
    if (view.spend.length > 1 || view.spend.length === 0) {
      rows.push(el("tr", {}, [
        el("th", { text: "all" }), el("td"), el("td"),
        el("td", { class: "num", text: num(t.usage.input) }), el("td", { class: "num", text: num(t.usage.output) }),
        el("td", { class: "num", text: money(t.cost && t.cost.batch) }), el("td", { class: "num", text: money(t.cost && t.cost.realtime) }),
        el("td", { class: "num", text: money(t.spent) })
      ]))
    }
    $("spend").replaceChildren(
      el("thead", {}, [el("tr", {}, ["stage", "model", "answered by", "tokens in", "tokens out", "at batch prices", "at real-time prices", "spent"].map(function (h, i) { return el("th", { class: i >= 3 ? "num" : "", text: h }) }))]),
      el("tbody", {}, rows)
    )
  }

  function histogram(name, box, h, color) {
    if (h.count === 0) { box.replaceChildren(el("p", { class: "muted", text: "no answers yet" })); return }
    var x = h.edges.slice(0, -1)
    chart(name, box, {
      width: chartWidth(box), height: 160,
      scales: { x: { time: false } },
      legend: { show: false },
      series: [{ label: "tokens" }, { label: "answers", fill: color, stroke: color, points: { show: false }, paths: uPlot.paths.bars({ size: [0.9, 60], align: 1 }) }],
      axes: [{ label: "tokens" }, { label: "answers" }]
    }, [x, h.counts.slice()])
  }

  function renderTokens(view) {
    var box = $("tokens")
    box.replaceChildren()
    if (view.tokens.length === 0) { box.appendChild(el("p", { class: "muted", text: "No answers with usage yet." })); return }
    view.tokens.forEach(function (d, i) {
      var stats = function (h) { return "p50 " + num(h.p50) + " · p95 " + num(h.p95) + " · max " + num(h.max) + " · mean " + num(h.mean === null ? null : Math.round(h.mean)) }
      var inBox = el("div"), outBox = el("div")
      box.appendChild(el("div", { class: "grid2" }, [
        el("div", {}, [el("div", { class: "hist-title", text: d.stage + ": input tokens per answer (" + num(d.answers) + " answers; " + stats(d.input) + ")" }), inBox]),
        el("div", {}, [el("div", { class: "hist-title", text: d.stage + ": output tokens per answer (" + stats(d.output) + ")" }), outBox])
      ]))
      histogram("in" + i, inBox, d.input, "#7ea6ef")
      histogram("out" + i, outBox, d.output, "#f0a35e")
    })
  }

  function renderFailures(view) {
    var box = $("failures")
    box.replaceChildren()
    if (view.failures.length === 0) { box.appendChild(el("p", { class: "muted", text: "No failures." })); return }
    view.failures.forEach(function (f) {
      box.appendChild(el("div", { class: "failure-class", "data-class": f["class"] }, [
        el("button", { class: "link", "data-failure-class": f["class"], onclick: function () { showClass(f["class"]) }, text: f["class"] }),
        " ",
        el("span", { class: "badge failed", text: num(f.count) + (f.count === 1 ? " row" : " rows") }),
        el("ul", {}, f.examples.map(function (e) {
          return el("li", {}, [el("code", { text: e.key || e.custom_id || e.location || "" }), " ", el("span", { class: "muted", text: e.code + ": " + e.message })])
        }))
      ]))
    })
  }

  // ---------------------------------------------------------------------------------------
  // The row browser
  // ---------------------------------------------------------------------------------------

  var query = { offset: 0, limit: PAGE_SIZE, status: "", failureClass: "", stage: "", q: "" }

  function fillSelect(select, values, current) {
    var options = [el("option", { value: "", text: "any" })].concat(values.map(function (v) { return el("option", { value: v, text: v }) }))
    select.replaceChildren.apply(select, options)
    select.value = current
  }

  function renderFilters(view) {
    fillSelect($("filter-class"), view.failures.map(function (f) { return f["class"] }).concat(query.failureClass && !view.failures.some(function (f) { return f["class"] === query.failureClass }) ? [query.failureClass] : []), query.failureClass)
    fillSelect($("filter-stage"), view.stages.map(function (s) { return s.name }), query.stage)
  }

  function showClass(cls) {
    query.failureClass = cls
    query.status = ""
    query.offset = 0
    $("filter-class").value = cls
    $("filter-status").value = ""
    loadRows()
    $("rows-section").scrollIntoView()
  }

  var loading = 0
  function loadRows() {
    var mine = ++loading
    var q = { offset: query.offset, limit: query.limit, status: query.status, failureClass: query.failureClass, stage: query.stage, q: query.q }
    $("rows-status").textContent = "loading…"
    return source.rows(q).then(function (page) {
      if (mine !== loading) return
      renderRows(page)
    }).catch(function (e) { $("rows-status").textContent = String(e) })
  }

  function renderRows(page) {
    var body = page.rows.map(function (r) {
      var rawBox = el("pre", { class: "raw", hidden: "" })
      var rawButton = el("button", { class: "link", onclick: function () {
        if (!rawBox.hidden) { rawBox.hidden = true; return }
        source.raw(r.customId).then(function (raw) {
          rawBox.textContent = raw === null ? "(no answer collected for this row)" : text(raw)
          rawBox.hidden = false
        })
      }, text: "raw answer" })
      return el("tr", { "data-custom-id": r.customId, "data-key": r.key === null ? "" : r.key, "data-status": r.status, "data-class": r.failure ? r.failure["class"] : "" }, [
        el("td", {}, [el("div", { text: r.key === null ? "(no key)" : r.key }), el("div", { class: "muted", text: r.stage + " · " + r.shard }), r.cached ? el("span", { class: "badge", text: "cached" }) : null]),
        el("td", {}, [el("span", { class: "badge " + r.status, text: r.status }),
          r.failure ? el("div", { class: "muted", text: r.failure["class"] + " · " + r.failure.code + ": " + r.failure.message }) : null]),
        el("td", { class: "io" }, [el("pre", { text: text(r.input) })]),
        el("td", { class: "io" }, [el("pre", { text: r.output === null ? "" : text(r.output) }), rawButton, rawBox])
      ])
    })
    $("rows").replaceChildren(
      el("thead", {}, [el("tr", {}, ["row", "status", "input", "output"].map(function (h) { return el("th", { text: h }) }))]),
      el("tbody", {}, body)
    )
    var last = page.offset + page.rows.length
    $("rows-status").textContent = page.rows.length === 0
      ? "no rows match"
      : "rows " + num(page.offset + 1) + "–" + num(last) + " of " + (page.total === null ? "many (still counting)" : num(page.total))
    $("rows-status").setAttribute("data-total", page.total === null ? "" : String(page.total))
    $("prev").disabled = page.offset === 0
    $("next").disabled = page.total !== null ? last >= page.total : page.rows.length < page.limit
  }

  function wireRowBrowser() {
    $("filter-status").addEventListener("change", function (e) { query.status = e.target.value; query.offset = 0; loadRows() })
    $("filter-class").addEventListener("change", function (e) { query.failureClass = e.target.value; query.offset = 0; loadRows() })
    $("filter-stage").addEventListener("change", function (e) { query.stage = e.target.value; query.offset = 0; loadRows() })
    var timer = null
    $("search").addEventListener("input", function (e) {
      clearTimeout(timer)
      timer = setTimeout(function () { query.q = e.target.value.trim(); query.offset = 0; loadRows() }, 150)
    })
    $("prev").addEventListener("click", function () { query.offset = Math.max(0, query.offset - query.limit); loadRows() })
    $("next").addEventListener("click", function () { query.offset += query.limit; loadRows() })
  }

  // ---------------------------------------------------------------------------------------

  function renderView(view) {
    renderHeader(view)
    renderTotals(view)
    renderTimeline(view)
    renderShards(view)
    renderSpend(view)
    renderTokens(view)
    renderFailures(view)
    renderFilters(view)
    document.body.setAttribute("data-view-at", String(view.at))
  }

  function start() {
    wireRowBrowser()
    var first = DATA.view ? Promise.resolve(DATA.view) : source.view()
    first.then(function (view) {
      renderView(view)
      return loadRows()
    }).then(function () {
      document.body.setAttribute("data-ready", "true")
    }).catch(function (e) {
      $("notice").hidden = false
      $("notice").textContent = "could not load the run: " + e
    })
    source.subscribe(function (view) {
      renderView(view)
      loadRows()
    })
  }

  start()
})()
