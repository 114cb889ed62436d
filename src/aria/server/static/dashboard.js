// The status dashboard: polls `GET /metrics/json` (the registry `/metrics` renders, with per-stage
// percentiles since start and over time) and draws it: latency lines per stage, engines and breakers,
// resident engines against the memory budget. Charts are inline SVG drawn here; nothing from a CDN.

import { emit } from "./events.js";

const SVG = "http://www.w3.org/2000/svg";
const params = new URLSearchParams(location.search);
const TOKEN = params.get("token");
const POLL_OVERRIDE = Number(params.get("poll")) || 0; // seconds (tests ask for a faster poll)
const CHART_STAGES = [
  ["final_transcript", "Final transcript"],
  ["first_token", "First token"],
  ["first_audio_out", "First audio out"],
  ["done", "Answer done (playback)"],
];
const STAGE_WORDS = {
  speech_end: "Speech end", final_transcript: "Final transcript", end_of_turn: "End of turn",
  llm_request: "LLM request", first_token: "First token", first_tts_request: "First TTS request",
  first_audio_out: "First audio out", done: "Answer done (playback)",
};
const QUANTILES = [["p50", "var(--accent)"], ["p90", "var(--warn)"], ["p99", "var(--danger)"]];
const SLOT_COLORS = ["#3b5bdb", "#2f9e44", "#e8590c", "#ae3ec9", "#1098ad", "#f08c00", "#c2255c"];

const $ = (id) => document.getElementById(id);
// The browser tests' hooks (test-only), when asked for: window.ariaTestHooks, or ?testhooks=1.
if (window.ariaTestHooks || params.has("testhooks")) (await import("./testhooks.js")).installDashboard();

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

export function formatMs(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms >= 10000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 100) return `${Math.round(ms)} ms`;
  return `${ms.toFixed(ms >= 10 ? 0 : 1)} ms`;
}

function formatMb(mb) {
  return mb >= 1024 ? `${(mb / 1024).toFixed(1)} GB` : `${Math.round(mb)} MB`;
}

/** A round axis maximum at or above `max` (1, 2, 2.5 or 5 times a power of ten). */
function niceMax(max) {
  if (!(max > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  return [1, 2, 2.5, 5, 10].map((m) => m * power).find((v) => v >= max);
}

/** Empty figures for `count` charts in `host`, laid out before any is drawn (each is drawn at its width). */
function figures(host, count) {
  host.replaceChildren(...Array.from({ length: count }, () => el("figure")));
  return [...host.children];
}

/** A line chart in `figure` (in the page): `lines` = [{name, color, dash, points: [[t, value|null], ...]}]
 * over [t0, t1] seconds, drawn at the figure's width (text stays at its size). */
export function lineChart(figure, { lines, t0, t1, format, title, yMax }) {
  figure.append(el("figcaption", "", title));
  const W = Math.max(200, Math.round(figure.clientWidth || 320)), H = 150, L = 52, R = 8, T = 8, B = 20;
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img" });
  const values = lines.flatMap((l) => l.points.map(([, v]) => v)).filter((v) => typeof v === "number");
  const top = niceMax(Math.max(yMax || 0, ...values));
  const x = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - v / top) * (H - T - B);
  for (let i = 0; i <= 4; i += 1) {
    const v = (top * i) / 4;
    chart.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    const label = svg("text", { class: "axis-label", x: L - 4, y: y(v) + 3, "text-anchor": "end" });
    label.textContent = format(v);
    chart.append(label);
  }
  const span = t1 - t0;
  for (const frac of [0, 0.5, 1]) {
    const ago = Math.round(span * (1 - frac));
    const label = svg("text", { class: "axis-label", x: L + frac * (W - L - R), y: H - 4, "text-anchor": frac === 0 ? "start" : frac === 1 ? "end" : "middle" });
    label.textContent = ago === 0 ? "now" : ago >= 120 ? `−${Math.round(ago / 60)} min` : `−${ago} s`;
    chart.append(label);
  }
  let drawn = 0;
  for (const line of lines) {
    // A gap where a sample has no value (no turns in its window): separate runs.
    let run = [];
    const flush = () => {
      if (run.length === 1) chart.append(svg("circle", { cx: run[0][0], cy: run[0][1], r: 2.5, style: `fill: ${line.color}`, class: "dot" }));
      if (run.length > 1) {
        chart.append(svg("polyline", {
          class: "line", style: `stroke: ${line.color}`, points: run.map((p) => p.join(",")).join(" "),
          ...(line.dash ? { "stroke-dasharray": line.dash } : {}),
        }));
      }
      drawn += run.length;
      run = [];
    };
    for (const [t, v] of line.points) {
      if (typeof v === "number") run.push([x(t).toFixed(1), y(Math.min(v, top)).toFixed(1)]);
      else flush();
    }
    flush();
  }
  if (!drawn) {
    const empty = svg("text", { class: "empty", x: (L + W) / 2, y: H / 2, "text-anchor": "middle" });
    empty.textContent = "No turns yet";
    chart.append(empty);
  }
  chart.setAttribute("aria-label", `${title}: ${lines.map((l) => l.name).join(", ")}`);
  chart.dataset.points = String(drawn);
  figure.append(chart);
  const legend = el("ul", "legend");
  for (const line of lines) {
    const item = el("li");
    const swatch = el("i");
    swatch.style.background = line.color;
    item.append(swatch, line.name);
    legend.append(item);
  }
  figure.append(legend);
  return figure;
}

function renderLatency(data) {
  const series = data.series || [];
  const t1 = data.at;
  const t0 = Math.min(series.length ? series[0].at : t1 - 60, t1 - 60);
  const slots = figures($("latency-charts"), CHART_STAGES.length);
  CHART_STAGES.forEach(([stage, title], i) => lineChart(slots[i], {
    title,
    t0,
    t1,
    format: formatMs,
    lines: QUANTILES.map(([q, color]) => ({
      name: q,
      color,
      points: series.map((s) => [s.at, s.stages?.[stage]?.[q] ?? null]),
    })),
  }));
  $("latency-note").firstChild.textContent = `Percentiles of the turns in the last ${Math.round(data.window_s)} s, `
    + "from the end of speech (or the request of a typed turn), sampled while this page is open.";

  const rows = Object.entries(data.stages || {});
  const top = Math.max(1, ...rows.map(([, s]) => s.p99 || 0));
  $("stage-table").tBodies[0].replaceChildren(...rows.map(([stage, s]) => {
    const tr = el("tr");
    tr.dataset.stage = stage;
    const bar = el("div", "pbar");
    for (const [q, color] of [...QUANTILES].reverse()) {
      if (typeof s[q] !== "number") continue;
      const span = el("span");
      span.style.width = `${(s[q] / top) * 100}%`;
      span.style.background = color;
      span.style.opacity = q === "p50" ? "1" : "0.55";
      bar.append(span);
    }
    const barCell = el("td", "dash-barcell");
    barCell.append(bar);
    tr.append(el("th", "", STAGE_WORDS[stage] || stage), el("td", "num", String(s.count)),
      el("td", "num", formatMs(s.p50)), el("td", "num", formatMs(s.p90)), el("td", "num", formatMs(s.p99)), barCell);
    return tr;
  }));
}

function badge(state, text = state) {
  return el("span", `badge ${state}`, String(text).replace("_", " "));
}

function renderEngines(data) {
  const rows = Object.entries(data.engines || {}).map(([kind, e]) => {
    const tr = el("tr");
    tr.dataset.kind = kind;
    const probe = data.probes?.[kind];
    const health = el("td");
    if (probe) health.append(badge(probe.ok ? "ok" : "failing", probe.ok ? "healthy" : "unhealthy"));
    health.title = probe?.detail || "";
    const state = el("td");
    state.append(badge(e.limited ? "limited" : e.state, e.limited ? "limited" : e.state));
    state.title = e.detail || "";
    tr.append(el("th", "", kind), el("td", "", e.name || "–"), state, health);
    return tr;
  });
  $("engine-table").tBodies[0].replaceChildren(...rows);

  const slots = Object.entries(data.breakers || {}).map(([slot, members]) => {
    const p = el("p", "breaker-slot");
    p.dataset.slot = slot;
    p.append(el("strong", "", slot));
    members.forEach((m, i) => {
      if (i) p.append(" › ");
      const b = badge(m.state, `${m.engine}: ${m.state}`);
      b.title = m.state === "unavailable" ? m.detail || "" : `${m.failures} failures in a row, opened ${m.opened}×`;
      p.append(b);
    });
    return p;
  });
  $("breakers").replaceChildren(el("h3", "", "Breakers (each chain, first member first)"), ...slots);

  const turns = Object.entries(data.turns || {}).map(([outcome, n]) => el("span", "", `${outcome}: ${n}`));
  const errors = Object.entries(data.errors || {}).map(([code, n]) => el("span", "", `error ${code}: ${n}`));
  $("turns").replaceChildren(...(turns.length || errors.length ? [...turns, ...errors] : [el("span", "muted", "none yet")]));
}

function renderMemory(data) {
  const series = data.series || [];
  const t1 = data.at;
  const t0 = Math.min(series.length ? series[0].at : t1 - 60, t1 - 60);
  const points = (key) => series.map((s) => [s.at, s[key] ?? null]);
  const usage = data.residency || {};
  const lines = [
    { name: "resident engines", color: "var(--accent)", points: points("resident_mb") },
    { name: "process RSS", color: "var(--ok)", points: points("rss_mb") },
  ];
  const used = Math.max(0, ...series.flatMap((s) => [s.resident_mb || 0, s.rss_mb || 0]));
  const budget = Math.max(1, usage.budget_mb || 1);
  // The budget as a line when it is near what is used; far above it, in words (the lines stay readable).
  if (budget <= used * 2) lines.push({ name: "budget", color: "var(--muted)", dash: "4 3", points: points("budget_mb") });
  lineChart(figures($("memory-chart"), 1)[0], {
    title: budget <= used * 2 ? "Memory over time" : `Memory over time (budget ${formatMb(budget)})`,
    t0, t1, format: formatMb, lines,
  });
  const engines = Object.entries(usage.engines || {});
  const bar = $("residency-bar");
  bar.replaceChildren(...engines.filter(([, e]) => e.resident).map(([slot, e], i) => {
    const span = el("span");
    span.style.width = `${Math.min(100, (e.cost_mb / budget) * 100)}%`;
    span.style.background = SLOT_COLORS[i % SLOT_COLORS.length];
    span.title = `${slot}: ${formatMb(e.cost_mb)}`;
    return span;
  }));
  bar.setAttribute("aria-label", `Resident engines use ${formatMb(usage.resident_mb || 0)} of the ${formatMb(budget)} budget`);
  bar.title = bar.getAttribute("aria-label");
  $("residency-table").tBodies[0].replaceChildren(...engines.map(([slot, e]) => {
    const tr = el("tr");
    tr.dataset.slot = slot;
    const resident = el("td");
    resident.append(badge(e.resident ? "ready" : "unloaded", e.resident ? "resident" : "unloaded"));
    tr.append(el("th", "", slot), el("td", "", e.kind), resident, el("td", "num", formatMb(e.cost_mb || 0)),
      el("td", "num", String(e.loads ?? 0)));
    return tr;
  }));
}

function render(data) {
  const status = $("dash-status");
  status.dataset.status = data.status;
  $("dash-status-text").textContent = data.status;
  const minutes = Math.floor(data.uptime_s / 60);
  $("dash-updated").textContent = `up ${minutes >= 60 ? `${Math.floor(minutes / 60)} h ${minutes % 60} min` : `${minutes} min`}`
    + ` · ${data.connections} connection${data.connections === 1 ? "" : "s"} · updated ${new Date(data.at * 1000).toLocaleTimeString()}`;
  renderLatency(data);
  renderEngines(data);
  renderMemory(data);
  emit("dashboard-rendered", data);
}

let timer = null;
async function poll() {
  emit("dashboard-poll");
  let wait = POLL_OVERRIDE || 3;
  try {
    const res = await fetch("/metrics/json", {
      headers: { Accept: "application/json", ...(TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {}) },
      cache: "no-store",
    });
    if (!res.ok) throw new Error(res.status === 401 ? "the server wants its token: open /dashboard?token=…" : `HTTP ${res.status}`);
    const data = await res.json();
    wait = POLL_OVERRIDE || data.poll_s || wait;
    $("dash-error").hidden = true;
    render(data);
  } catch (exc) {
    emit("dashboard-error", String(exc.message || exc));
    $("dash-error").textContent = `Could not read the server's metrics: ${exc.message || exc}`;
    $("dash-error").hidden = false;
    $("dash-status").dataset.status = "unreachable";
    $("dash-status-text").textContent = "unreachable";
  }
  clearTimeout(timer);
  timer = setTimeout(poll, wait * 1000);
}

poll();
