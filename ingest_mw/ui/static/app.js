// The Live Tail page: filters -> /api/events (search), /api/stream (server-sent events), /api/rate and /api/refusals (charts).
"use strict";
(function () {
  const BASE = document.body.dataset.base;
  const MAX_ROWS = 1000;
  const RANGES = { live: 3600, "15m": 900, "6h": 21600, "24h": 86400, "7d": 604800 };
  const REFUSAL_COLOURS = ["#ff6b6b", "#f5b83d", "#d46bff", "#ff9f43", "#e05780", "#c9a227", "#ff8fa3", "#b07cff"];
  const COLOURS = ["#5b8cff", "#4cc38a", "#f5b83d", "#ff6b6b", "#d46bff", "#3fc1c9", "#ff9f43", "#a0a8b8"];
  const $ = (id) => document.getElementById(id);
  const form = $("filters");
  const state = { events: [], pending: [], paused: false, newestTop: true, stream: null, cursor: null,
    next: null, selected: null, chartTimer: null, chartDirty: false };

  function levelClass(level) {
    const l = (level || "").toLowerCase().slice(0, 3);
    if (["err"].includes(l)) return "error";
    if (["war"].includes(l)) return "warn";
    if (["inf", "not"].includes(l)) return "info";
    if (["fat", "cri", "eme", "ale", "pan"].includes(l)) return "fatal";
    return "";
  }

  function filterParams() {
    const p = new URLSearchParams();
    const data = new FormData(form);
    for (const name of ["api", "source", "dataset", "service", "level", "q"]) {
      const value = (data.get(name) || "").trim();
      if (value) p.set(name, value);
    }
    const range = data.get("range");
    if (range === "custom") {
      for (const name of ["since", "until"]) {
        const value = data.get(name);
        if (value) p.set(name, new Date(value).toISOString());
      }
    } else {
      p.set("since", new Date(Date.now() - RANGES[range] * 1000).toISOString());
    }
    return p;
  }
  const isLive = () => form.elements.range.value !== "custom" || !form.elements.until.value;

  async function getJSON(path, params) {
    const response = await fetch(`${BASE}${path}${params ? "?" + params : ""}`, { headers: { Accept: "application/json" } });
    if (response.status === 401) { location.href = `${BASE}/`; throw new Error("unauthorized"); }
    const body = await response.json();
    if (!response.ok) throw new Error(body.message || response.statusText);
    return body;
  }

  function fmtTime(iso) {
    const d = new Date(iso);
    const pad = (n, w = 2) => String(n).padStart(w, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  function row(event, fresh) {
    const tr = document.createElement("tr");
    tr.dataset.id = event.id;
    if (fresh) tr.className = "fresh";
    if (event.id === state.selected) tr.classList.add("selected");
    const origin = [event.source, event.dataset, event.service].filter(Boolean).join(" / ");
    const restText = Object.keys(event.rest).length ? JSON.stringify(event.rest) : "";
    const cells = [
      [fmtTime(event.dt), ""],
      [event.level || "–", "lvl " + levelClass(event.level)],
      [origin, ""],
    ];
    for (const [text, cls] of cells) {
      const td = document.createElement("td");
      if (cls) { const span = document.createElement("span"); span.className = cls; span.textContent = text; td.append(span); }
      else td.textContent = text;
      td.title = text;
      tr.append(td);
    }
    const msg = document.createElement("td");
    msg.textContent = event.message == null ? "" : event.message;
    if (restText) { const span = document.createElement("span"); span.className = "rest"; span.textContent = restText; msg.append(span); }
    msg.title = (event.message || "") + (restText ? " " + restText : "");
    tr.append(msg);
    return tr;
  }

  function render() {
    const body = $("events");
    body.replaceChildren(...(state.newestTop ? state.events : [...state.events].reverse()).map((e) => row(e, false)));
    updateCounts();
  }

  function updateCounts() {
    $("count").textContent = `${state.events.length} event${state.events.length === 1 ? "" : "s"}${state.next ? " (older ones on request)" : ""}` +
      (state.skipped ? " · arriving faster than shown: the newest of each moment are streamed" : "");
    $("empty").hidden = state.events.length > 0;
    $("older").hidden = !state.next;
    const pending = $("pending");
    pending.hidden = state.pending.length === 0;
    pending.textContent = `${state.pending.length} new while paused – click to show`;
  }

  function addLive(events) {
    // events: oldest first, from the stream
    const known = new Set(state.events.slice(0, 200).map((e) => e.id));
    const fresh = events.filter((e) => !known.has(e.id)).reverse();
    if (!fresh.length) return;
    state.events = fresh.concat(state.events).slice(0, MAX_ROWS);
    const body = $("events");
    const rows = fresh.map((e) => row(e, true));
    if (state.newestTop) body.prepend(...rows);
    else body.append(...rows.reverse());
    while (body.children.length > MAX_ROWS) (state.newestTop ? body.lastChild : body.firstChild).remove();
    if (!state.newestTop) { const panel = body.closest(".events-panel"); panel.scrollTop = panel.scrollHeight; }
    updateCounts();
    state.chartDirty = true;
  }

  function setStatus(kind, text) {
    $("status").className = "status " + kind;
    $("status-text").textContent = text;
  }

  function openStream() {
    if (state.stream) state.stream.close();
    state.stream = null;
    if (!isLive()) { setStatus("", "range (not live)"); return; }
    const p = filterParams();
    p.delete("until");
    if (state.cursor != null) p.set("after", state.cursor);
    const stream = new EventSource(`${BASE}/api/stream?${p}`);
    stream.addEventListener("open", () => setStatus(state.paused ? "paused" : "live", state.paused ? "paused" : "live"));
    stream.addEventListener("error", () => setStatus("down", "reconnecting…"));
    // The server ends a stream now and then (and when it shuts down): go on from the cursor.
    stream.addEventListener("end", (message) => {
      const cursor = Number(message.data);
      if (state.cursor == null || cursor > state.cursor) state.cursor = cursor;
      if (state.stream === stream) openStream();
    });
    stream.addEventListener("events", (message) => {
      const { events, skipped } = JSON.parse(message.data);
      state.cursor = events[events.length - 1].id;
      if (skipped) state.skipped = true;
      if (state.paused) { state.pending.push(...events); updateCounts(); }
      else addLive(events);
    });
    state.stream = stream;
  }

  async function search() {
    const p = filterParams();
    const found = await getJSON("/api/events", p);
    state.events = found.events;
    state.next = found.next;
    state.cursor = found.cursor;
    state.pending = [];
    state.skipped = false;
    render();
  }

  async function older() {
    const p = filterParams();
    p.set("before", state.next);
    const found = await getJSON("/api/events", p);
    state.events = state.events.concat(found.events);
    state.next = found.next;
    render();
  }

  async function reload() {
    try {
      await search();
      openStream();
      await chart();
    } catch (error) {
      setStatus("down", error.message);
    }
  }

  // --- chart -------------------------------------------------------------
  const SVG = "http://www.w3.org/2000/svg";
  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text != null) node.textContent = text;
    return node;
  }

  async function chart() {
    const p = filterParams();
    if (isLive()) p.delete("until");
    const byParams = new URLSearchParams(p);
    byParams.set("by", $("chart-by").value);
    const [rate] = await Promise.all([getJSON("/api/rate", byParams), refusalsChart()]);
    state.chartDirty = false;
    const drawn = drawBars($("chart"), rate, COLOURS);
    $("chart-title").textContent = `Events per ${per(rate.bucket)} · ${drawn.total} in range`;
    legend($("legend"), drawn.names, COLOURS);
  }
  // Refusals per bucket of the range, from the server's metrics (not from the stored rows).
  async function refusalsChart() {
    const p = filterParams();
    if (isLive()) p.delete("until");
    const refused = await getJSON("/api/refusals", p);
    const svg = $("refusals");
    if (!refused.available) {
      svg.replaceChildren();
      svg.classList.add("off");
      $("refusals-title").textContent = "Refusals not available: nothing counts them in this server (metrics off: serve --no-metrics, or a host app without PrometheusObserver)";
      $("refusals-scope").textContent = "";
      legend($("refusals-legend"), [], REFUSAL_COLOURS);
      return;
    }
    svg.classList.remove("off");
    const shown = drawBars(svg, refused, REFUSAL_COLOURS);
    $("refusals-title").textContent = `Refused per ${per(refused.bucket)} · ${shown.total} in range`;
    const since = refused.since ? `, counted since ${fmtTime(new Date(refused.since * 1000)).slice(0, 16)}` : "";
    const scope = $("refusals-scope");
    scope.textContent = (refused.scope === "server" ? "all workers" : "this process") + since;
    scope.title = "Requests refused whole, by status; events refused inside accepted requests, by reason. " +
      (refused.scope === "server" ? "Summed over every worker of the server." : "Counted by the process that serves this page.");
    legend($("refusals-legend"), shown.names, REFUSAL_COLOURS);
  }
  function per(bucket) {
    return { 60: "minute", 300: "5 minutes", 900: "15 minutes", 1800: "30 minutes", 3600: "hour", 10800: "3 hours", 21600: "6 hours", 86400: "day", 604800: "week" }[bucket] || `${bucket} s`;
  }
  function legend(node, names, colours) {
    node.replaceChildren(...names.map((name, index) => {
      const span = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = colours[index % colours.length];
      span.append(swatch, name || "(none)");
      return span;
    }));
  }

  // Stacked bars of {start, bucket, buckets, series} into svg: the names drawn and the total.
  function drawBars(svg, rate, colours) {
    const width = svg.clientWidth || 800, height = svg.clientHeight || 130;
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const left = 40, bottom = 18, top = 6, plotW = width - left - 6, plotH = height - top - bottom;
    const names = Object.keys(rate.series).sort();
    const totals = new Array(rate.buckets).fill(0);
    for (const name of names) rate.series[name].forEach((n, i) => (totals[i] += n));
    const max = Math.max(1, ...totals);
    const step = niceStep(max);
    const yMax = Math.ceil(max / step) * step;
    const nodes = [];
    for (let v = 0; v <= yMax; v += step) {
      const y = top + plotH - (v / yMax) * plotH;
      nodes.push(el("line", { class: "grid", x1: left, x2: width - 6, y1: y, y2: y }));
      nodes.push(el("text", { class: "axis", x: left - 6, y: y + 3, "text-anchor": "end" }, compact(v)));
    }
    const barW = plotW / rate.buckets;
    const stacked = new Array(rate.buckets).fill(0);
    names.forEach((name, index) => {
      const colour = colours[index % colours.length];
      rate.series[name].forEach((n, i) => {
        if (!n) return;
        const h = (n / yMax) * plotH;
        const y = top + plotH - stacked[i] / yMax * plotH - h;
        stacked[i] += n;
        const bar = el("rect", { x: left + i * barW + 0.5, y, width: Math.max(1, barW - 1), height: h, fill: colour, rx: 1 });
        bar.append(el("title", {}, `${name}: ${n} at ${fmtTime(new Date((rate.start + i * rate.bucket) * 1000))}`));
        nodes.push(bar);
      });
    });
    // Time ticks on round local times: the smallest step that gives at most 8.
    const span = rate.buckets * rate.bucket;
    const stepSeconds = [60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800].find((t) => span / t <= 8) || 604800;
    const offset = -new Date(rate.start * 1000).getTimezoneOffset() * 60;
    let tick = Math.ceil((rate.start + offset) / stepSeconds) * stepSeconds - offset;
    for (; tick <= rate.start + span; tick += stepSeconds) {
      const x = left + ((tick - rate.start) / rate.bucket) * barW;
      const at = new Date(tick * 1000);
      const label = stepSeconds >= 86400 ? at.toLocaleDateString([], { month: "short", day: "numeric" }) : at.toTimeString().slice(0, 5);
      nodes.push(el("line", { class: "grid", x1: x, x2: x, y1: top + plotH, y2: top + plotH + 3 }));
      nodes.push(el("text", { class: "axis", x, y: height - 4, "text-anchor": x < left + 20 ? "start" : x > width - 30 ? "end" : "middle" }, label));
    }
    svg.replaceChildren(...nodes);
    return { names, total: totals.reduce((a, b) => a + b, 0) };
  }
  function niceStep(max) {
    const raw = max / 4, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (raw <= m * mag) return Math.max(1, m * mag);
    return Math.max(1, 10 * mag);
  }
  function compact(v) { return v >= 1e6 ? (v / 1e6).toFixed(1) + "M" : v >= 1e3 ? (v / 1e3).toFixed(v >= 1e4 ? 0 : 1) + "k" : String(v); }

  // --- detail ------------------------------------------------------------
  function highlight(json) {
    const escaped = json.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
    return escaped.replace(/("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g,
      (m, str, colon, lit) => str ? `<span class="${colon ? "j-key" : "j-str"}">${str}</span>${colon || ""}`
        : lit ? `<span class="j-lit">${m}</span>` : `<span class="j-num">${m}</span>`);
  }

  async function openEvent(id) {
    const event = await getJSON(`/api/events/${id}`);
    state.selected = event.id;
    for (const tr of $("events").children) tr.classList.toggle("selected", Number(tr.dataset.id) === event.id);
    $("detail-id").textContent = `#${event.id}`;
    const meta = $("detail-meta");
    meta.replaceChildren();
    for (const name of ["dt", "received_at", "api", "source", "dataset", "service", "namespace", "level"]) {
      if (event[name] == null) continue;
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = name; dd.textContent = event[name];
      meta.append(dt, dd);
    }
    const text = JSON.stringify(event.data, null, 2);
    $("detail-json").innerHTML = highlight(text);
    $("detail-json").dataset.raw = JSON.stringify(event.data);
    $("detail").hidden = false;
  }

  // --- facets ------------------------------------------------------------
  async function facets() {
    const found = await getJSON("/api/facets");
    const api = form.elements.api, level = form.elements.level;
    for (const value of found.api) api.append(new Option(value, value));
    for (const value of found.level) level.append(new Option(value, value));
    for (const name of ["source", "dataset", "service"]) {
      $(`list-${name}`).replaceChildren(...found[name].map((v) => new Option(v, v)));
    }
  }

  // --- wiring --------------------------------------------------------------
  form.addEventListener("submit", (e) => { e.preventDefault(); reload(); });
  form.elements.range.addEventListener("change", () => {
    const custom = form.elements.range.value === "custom";
    for (const label of form.querySelectorAll(".custom")) label.hidden = !custom;
    if (!custom) reload();
  });
  for (const name of ["api", "level"]) form.elements[name].addEventListener("change", reload);
  $("clear").addEventListener("click", () => { form.reset(); for (const l of form.querySelectorAll(".custom")) l.hidden = true; reload(); });
  $("pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("pause").textContent = state.paused ? "Resume" : "Pause";
    $("pause").classList.toggle("on", state.paused);
    if (!state.paused && state.pending.length) { const p = state.pending; state.pending = []; addLive(p); }
    if (state.stream) setStatus(state.paused ? "paused" : "live", state.paused ? "paused" : "live");
    updateCounts();
  });
  $("pending").addEventListener("click", () => $("pause").click());
  $("order").addEventListener("click", () => {
    state.newestTop = !state.newestTop;
    $("order").textContent = state.newestTop ? "Newest on top" : "Newest at bottom";
    render();
  });
  $("older").addEventListener("click", older);
  $("events").addEventListener("click", (e) => { const tr = e.target.closest("tr"); if (tr) openEvent(tr.dataset.id); });
  $("close").addEventListener("click", () => { $("detail").hidden = true; state.selected = null; render(); });
  $("copy").addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText($("detail-json").dataset.raw));
  $("chart-by").addEventListener("change", chart);
  window.addEventListener("resize", () => chart());
  // The chart follows the live tail at most every 5 seconds, and once a minute regardless.
  setInterval(() => { if (isLive() && !state.paused && state.chartDirty) chart(); }, 5000);
  setInterval(() => { if (isLive() && !state.paused) chart(); }, 60000);
  // Refusals come with no event to tell the page: read every 10 seconds.
  setInterval(() => { if (isLive() && !state.paused) refusalsChart().catch(() => {}); }, 10000);

  facets().catch(() => {});
  reload();
})();
