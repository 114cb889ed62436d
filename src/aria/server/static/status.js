// The status pill (idle, listening, thinking, speaking; what is loading; a mode switch under way), the
// connection pill (from connection.js's events), the engines line under the settings, and what
// `GET /health` says (breakers, limited engines, modes).

import { showLimited } from "./banner.js";
import { resume } from "./connection.js";
import { showDownloads } from "./downloads.js";
import { el, engineWords, ui } from "./dom.js";
import { on } from "./events.js";
import { modeInReason, modeInfo, setModeAvailability } from "./modes.js";
import { app } from "./state.js";

const STATE_WORDS = { idle: "Idle", listening: "Listening", thinking: "Thinking", speaking: "Speaking" };

let player = null;

export function initStatus(thePlayer) {
  player = thePlayer;
  on("connection", renderConnection);
  on("pong", ({ roundTripMs }) => { ui.conn.title = `round trip ${roundTripMs} ms`; });
  ui.conn.addEventListener("click", () => {
    if (ui.conn.dataset.parked !== "true") return;
    resume();
  });
}

/** The connection pill: connecting, open, offline (with why); a parked connection waits for a click. */
function renderConnection({ state, words, code, parked }) {
  ui.conn.dataset.conn = state;
  ui.conn.dataset.parked = String(parked);
  ui.conn.style.cursor = parked ? "pointer" : "";
  ui.connText.textContent = words;
  ui.conn.title = code ? `last close code ${code}` : "";
}

export function setServerState(state, loading = [], reason = "") {
  app.serverState = state;
  app.loading = loading;
  app.loadingReason = loading.length ? reason : "";
  renderStatus();
}

/** The server's state, except that an answer stopped here (barge-in, Stop) no longer counts as one. */
export function serverState() {
  const cut = app.serverState === "responding" && player.discarded.has(app.stateTurn);
  return cut ? "idle" : app.serverState;
}

/** What is loading, in words: a mode switch's models ("Loading deep-dive model…") or engine kinds. */
function loadingWords() {
  const forMode = modeInReason(app.loadingReason);
  if (forMode) {
    const name = forMode.label.toLowerCase().replace(/\s+/g, "-");
    return `Loading ${name} model${app.loading.length > 1 ? "s" : ""}…`;
  }
  return `loading ${app.loading.map(engineWords).join(", ")}…`;
}

export function renderStatus() {
  const state = serverState();
  const shown = player.playing ? "speaking"
    : { listening: "listening", processing: "thinking", responding: "speaking" }[state] || "idle";
  ui.status.dataset.state = shown;
  ui.status.dataset.loading = String(app.loading.length > 0);
  let words = STATE_WORDS[shown];
  if (app.loading.length) {
    const loading = loadingWords();
    words = modeInReason(app.loadingReason) ? loading : `${words} · ${loading}`;
  } else if (app.pendingMode) {
    words = `Switching to ${modeInfo(app.pendingMode).label}…`;
  }
  ui.statusText.textContent = words;
  ui.status.title = app.loadingReason;
  ui.stop.disabled = !(player.playing || state === "processing" || state === "responding");
}

let lastEngines = {};
let tripped = [];
let limitedKinds = new Set();

/** The engines line: per kind, the engine that really answers (a chain's serving member), marked when it
 * is of limited quality; then engines failing or on trial. */
export function showEngines(engines) {
  lastEngines = engines;
  const parts = Object.entries(engines).map(([kind, e]) => {
    const what = engineWords(kind);
    if (e.state === "ready") {
      let name = e.name || "ready";
      // The language model's own model (picked with the model picker): "ollama (llama3.2)".
      if (kind === "llm" && app.llmModel && !name.includes(app.llmModel)) name = `${name} (${app.llmModel})`;
      return limitedKinds.has(kind) ? [`${what}: `, el("span", "limited", `${name} (limited)`)] : [`${what}: ${name}`];
    }
    if (e.state === "loading") return [`${what}: loading…`];
    return [`${what}: unavailable`];
  });
  for (const t of tripped) parts.push([`⚠ ${t.engine} ${t.state === "open" ? "failing, skipped" : "being retried"}`]);
  ui.engines.replaceChildren(...parts.flatMap((part, i) => (i ? [" · ", ...part] : part)));
  ui.engines.dataset.tripped = String(tripped.length > 0);
  ui.engines.dataset.limited = String(limitedKinds.size > 0);
  ui.engines.title = Object.entries(engines).map(([k, e]) => `${k}: ${e.detail || e.state}`).join("\n");
}

/** `GET /health`: breakers (engines failing, open, or on trial, half open), engines of limited quality (the
 * banner; `name` there is the member that serves), and modes that cannot work with the engines at hand. */
export async function pollBreakers() {
  try {
    const res = await fetch("/health", { headers: { Accept: "application/json" }, cache: "no-store" });
    const health = await res.json();
    tripped = Object.entries(health.breakers || {}).flatMap(([slot, members]) =>
      members.filter((m) => m.state === "open" || m.state === "half_open").map((m) => ({ slot, ...m })));
    app.breakers = health.breakers || {};
    const limited = health.limited || [];
    limitedKinds = new Set(limited.map((l) => l.kind));
    showLimited(limited);
    showDownloads(health.downloads || [], pollBreakers); // every second while a model downloads
    setModeAvailability(health.modes || {});
    // The serving member can change (a breaker opened): take the name /health gives.
    const live = Object.fromEntries(Object.entries(lastEngines).map(([kind, e]) => {
      const now = health.engines?.[kind];
      return [kind, now && e.state === "ready" && now.name ? { ...e, name: now.name } : e];
    }));
    showEngines(live);
  } catch {
    // the server is unreachable: the connection pill already says so
  }
}
