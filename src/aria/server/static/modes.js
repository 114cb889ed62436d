// Modes: the picker (from `session.mode_details`), switching (the server's `mode` message is the truth),
// and what each mode changes on the page: the microphone, the dictation document of a transcript-only
// mode, the camera hint of a mode that looks, and the watch condition and alerts of a watching mode.

import { send } from "./connection.js";
import { showDictation } from "./dictation.js";
import { announce, el, engineWords, localError, notify, ui } from "./dom.js";
import { cameraOn, setMicAvailable } from "./media.js";
import { emit } from "./events.js";
import { app } from "./state.js";

// A mode the server does not describe: talk or type, no hints (the image and camera buttons stay anyway).
const PLAIN_INPUTS = ["audio", "text"];
const MAX_ALERTS = 50;
const deps = { onChange: () => {} };

/** `onChange()`: the mode, a pending switch or the watch changed (the status pill shows a switch). */
export function initModes({ onChange }) {
  deps.onChange = onChange;
  ui.mode.addEventListener("change", requestSwitch);
  ui.watchForm.addEventListener("submit", submitWatch);
}

/** The server's description of a mode; for a server without `mode_details`, a plain chat. */
export function modeInfo(name) {
  const known = app.modeDetails.find((m) => m.name === name);
  if (known) return known;
  const label = (name || "").replaceAll("_", " ");
  return { name, label, description: "", inputs: PLAIN_INPUTS, outputs: [], watches: false, available: true };
}

/** The mode a reason such as "loading llm:deep_dive for deep dive" names (by name, spelled with spaces, or
 * by label), if the session knows it. */
export function modeInReason(reason) {
  const said = /\bfor (.+)$/.exec(reason || "")?.[1].trim().toLowerCase();
  if (!said) return null;
  const names = (m) => [m.name, m.name.replaceAll("_", " "), m.label || ""].map((n) => n.toLowerCase());
  return app.modeDetails.find((m) => names(m).includes(said)) || null;
}

/** Only a server that describes its modes answers a switch with a `mode` message. */
function confirmsSwitches() {
  return app.modeDetails.length > 0;
}

/** A transcript-only mode (broadcast): transcripts make a document, no answers come. */
export function isDictation(name = app.mode) {
  const { outputs } = modeInfo(name);
  return outputs.includes("transcript") && !outputs.includes("text") && !outputs.includes("audio");
}

// -- the picker and switching --------------------------------------------------------------------------------

/** A `session` message: fill the picker, and take its mode as the one in effect. */
export function sessionModes(session) {
  app.modeDetails = session.mode_details || [];
  const details = app.modeDetails.length
    ? app.modeDetails
    : (session.modes?.length ? session.modes : [session.mode]).filter(Boolean).map(modeInfo);
  // A new connection starts its monitor afresh: after a drop, ask again for what was being watched for,
  // rather than let the monitor go quiet.
  const rewatch = session.resumed && session.mode === app.mode && modeInfo(session.mode).watches && app.watch;
  if (session.mode !== app.mode) app.modeEngines = {};
  app.mode = session.mode;
  app.pendingMode = null;
  app.watch = null;
  ui.mode.replaceChildren(...details.map(option)); // after the mode: the mode in effect is never disabled
  ui.mode.disabled = details.length < 2;
  if (rewatch) send({ type: "control", action: "set_watch", watch: rewatch });
  render();
  if (rewatch) ui.watchCurrent.textContent = `Setting: ${rewatch}…`; // until the `mode` message
}

function option(info) {
  const label = info.label || info.name;
  const o = new Option(info.available === false ? `${label} (unavailable)` : label, info.name);
  if (info.description) o.title = info.description;
  if (info.available === false) {
    o.disabled = info.name !== (app.pendingMode || app.mode); // the mode in effect stays shown
    o.dataset.unavailable = "true";
    o.title = info.reason || "This mode cannot work with the engines at hand.";
  }
  return o;
}

/** Modes that cannot work with the engines at hand, each with why: under the picker, before anyone picks. */
function renderUnavailable() {
  const out = app.modeDetails.filter((m) => m.available === false);
  ui.modeUnavailable.replaceChildren(...out.map((m) => {
    const li = el("li");
    li.dataset.mode = m.name;
    li.append(el("strong", "", `${m.label || m.name} is unavailable`), `: ${m.reason || "not with these engines."}`);
    return li;
  }));
  ui.modeUnavailable.hidden = out.length === 0;
}

/** `GET /health`'s `modes` ({name: {available, reason}}): the picker follows what the server can do now. */
export function setModeAvailability(modes) {
  let changed = false;
  app.modeDetails = app.modeDetails.map((m) => {
    const now = modes[m.name];
    if (!now || (now.available === (m.available !== false) && (now.reason || "") === (m.reason || ""))) return m;
    changed = true;
    return { ...m, available: now.available, reason: now.reason || "" };
  });
  if (!changed) return;
  ui.mode.replaceChildren(...app.modeDetails.map(option));
  render();
}

function requestSwitch() {
  const mode = ui.mode.value;
  const msg = { type: "control", action: "switch_mode", mode };
  const watch = ui.watchInput.value.trim();
  if (modeInfo(mode).watches && watch) msg.watch = watch;
  if (send(msg)) {
    if (confirmsSwitches()) app.pendingMode = mode;
    else app.mode = mode; // an older server: no `mode` message will come
  }
  render();
}

/** A `mode` message: the mode (and watch condition) now in effect. */
export function onModeMessage(msg) {
  emit("mode", msg);
  app.mode = msg.mode;
  app.modeEngines = msg.engines || {};
  if (app.pendingMode === msg.mode) app.pendingMode = null;
  const watches = modeInfo(msg.mode).watches;
  app.watch = watches ? msg.watch || null : null;
  // The field keeps what the person typed for the next switch into a watching mode.
  if (watches && document.activeElement !== ui.watchInput) ui.watchInput.value = app.watch || "";
  render();
}

/** A mode named by a notification (an older server's way of saying it switched). */
export function modeFromNotification(mode) {
  if (app.pendingMode === mode) app.pendingMode = null;
  app.mode = mode;
  render();
}

/** A switch that will not be confirmed (an error answered it, the connection dropped): the picker goes
 * back to the mode in effect. */
export function dropPendingSwitch() {
  app.pendingMode = null;
  render();
}

/** Put the page in the shape of the mode in effect (the picker shows a pending switch). */
function render() {
  const picked = app.pendingMode || app.mode;
  if (picked) {
    if (![...ui.mode.options].some((o) => o.value === picked)) ui.mode.append(option(modeInfo(picked)));
    ui.mode.value = picked;
  }
  ui.mode.setAttribute("aria-busy", String(app.pendingMode !== null));
  const info = modeInfo(app.mode);
  const pickedInfo = modeInfo(picked);
  // The mode's own engines (a slot named other than its role, e.g. llm -> llm:deep_dive); shared ones are
  // in the engines line.
  const own = Object.entries(app.pendingMode ? {} : app.modeEngines).filter(([role, slot]) => slot !== role);
  ui.modeDescription.textContent = pickedInfo.description;
  if (own.length) {
    const words = own.map(([role, slot]) => `${engineWords(role)}: ${slot}`).join(" · ");
    ui.modeDescription.append(el("span", "mode-engines", `Its own ${words}`));
  }
  ui.modeDescription.hidden = !ui.modeDescription.textContent;
  renderUnavailable();
  setMicAvailable(info.inputs.includes("audio"));
  setTextAvailable(info.inputs.includes("text"));
  showDictation(isDictation(app.mode));
  renderWatch(info, pickedInfo);
  renderHint();
  deps.onChange();
}

const TYPE_HERE = "Type a message (Enter to send)…";

/** A mode without text input (broadcast) takes no typed messages. */
function setTextAvailable(available) {
  ui.text.disabled = !available;
  ui.send.disabled = !available;
  ui.text.placeholder = available ? TYPE_HERE : "This mode takes speech only: use the microphone.";
}

// -- camera and image hints ----------------------------------------------------------------------------------

/** Modes that look get a hint: turn the camera on, attach an image. Also called when the camera changes. */
export function renderHint() {
  const { inputs, watches } = modeInfo(app.mode);
  const video = inputs.includes("video") && !ui.camera.disabled;
  const image = inputs.includes("image");
  let words = "";
  if (video && !cameraOn()) {
    words = watches ? "Turn on the camera: Aria watches it for you." : "Turn on the camera so Aria can see";
    if (!watches) words += image ? ", or attach an image with your question." : ".";
  } else if (video) {
    words = watches ? "Aria is watching the camera." : "Your questions are answered with the latest camera frame.";
  } else if (image) {
    words = "Attach an image (the picture button) to ask about it.";
  }
  ui.modeHint.textContent = words;
  ui.modeHint.hidden = !words;
  ui.camera.classList.toggle("suggest", video && !cameraOn());
}

// -- watching: the condition and the alerts ------------------------------------------------------------------

function renderWatch(info, pickedInfo) {
  ui.monitor.hidden = !pickedInfo.watches; // shown while switching in, so the condition can be typed
  ui.watchInput.maxLength = app.limits.max_text_chars;
  if (!info.watches) ui.watchCurrent.textContent = "Switching…";
  else if (app.watch) ui.watchCurrent.replaceChildren("Watching for: ", el("strong", "", app.watch));
  else ui.watchCurrent.textContent = "Not watching for anything yet: say what to look for.";
  ui.watchCurrent.dataset.watching = String(Boolean(info.watches && app.watch));
}

function submitWatch(event) {
  event.preventDefault();
  const watch = ui.watchInput.value.trim();
  if (!send({ type: "control", action: "set_watch", watch })) {
    localError("not_connected", "Not connected, so the watch condition was not set.");
    return;
  }
  ui.watchCurrent.textContent = watch ? `Setting: ${watch}…` : "Clearing…"; // until the `mode` message
}

/** A `notification`: a monitor alert goes to the alerts list (and is flashed and read out); returns whether
 * it was one. */
export function onMonitorAlert(msg) {
  const data = msg.data || {};
  if (data.kind !== "monitor") return false;
  const alert = {
    alert_id: data.alert_id ?? null,
    condition: data.condition ?? null,
    description: data.description || msg.text,
    at: data.at ?? null,
  };
  emit("alert", alert);
  const at = alertTime(alert.at);
  const time = el("time", "", at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }));
  time.dateTime = at.toISOString();
  const item = el("li", "monitor-alert");
  item.dataset.alertId = alert.alert_id ?? "";
  if (alert.condition) item.title = `Watching for: ${alert.condition}`;
  item.append(time, el("span", "", alert.description));
  ui.monitorAlerts.prepend(item);
  while (ui.monitorAlerts.children.length > MAX_ALERTS) ui.monitorAlerts.lastElementChild.remove();
  flashStatus();
  announce(`Alert: ${alert.description}`);
  if (ui.monitor.hidden) notify(msg.text || alert.description, "warning");
  return true;
}

/** `at` as seconds or milliseconds since the epoch, or an ISO string; now when missing or unreadable. */
function alertTime(at) {
  let date = null;
  if (typeof at === "number") date = new Date(at > 1e12 ? at : at * 1000);
  else if (typeof at === "string") date = new Date(at);
  return date && !Number.isNaN(date.getTime()) ? date : new Date();
}

let flashTimer = null;

function flashStatus() {
  emit("alert-flash");
  ui.status.classList.remove("flash");
  void ui.status.offsetWidth; // restart the animation
  ui.status.classList.add("flash");
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => ui.status.classList.remove("flash"), 2500);
}
