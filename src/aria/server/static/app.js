// Aria's page: the client of the WebSocket protocol v1 (`/ws`). This module wires the parts together: the
// server's messages to the log, the status and the modes; playback and barge-in; the buttons and keys.
// Plain ES modules, no build step, nothing from a CDN.
//
//   state.js       shared state        events.js  the event emitter the modules tell what happens
//   protocol.js    the wire: binary tags, message typedefs (checked against the server's models)
//   testhooks.js   test-only: window.ariaTest, loaded when window.ariaTestHooks or ?testhooks=1 asks
//   dom.js         elements, toasts, the screen-reader announcer, error words
//   connection.js  the WebSocket: reconnect and resume, send, ping
//   chat.js        the conversation log          dictation.js  the dictation document
//   conversations.js  the list of conversations: new, open, rename, export, delete
//   media.js       microphone, image upload, camera
//   modes.js       mode picker, per-mode UI, watch condition, alerts
//   status.js      the status pill and the engines line    banner.js  the limited-setup banner
//   settings.js    the voice picker (voices.js: voice names and languages)   models.js  the model picker
//   audio.js, waterfall.js  playback, latency charts

import { Player, createAudioContext, resumeAudio } from "./audio.js";
import { initBanner } from "./banner.js";
import * as chat from "./chat.js";
import * as link from "./connection.js";
import * as conversations from "./conversations.js";
import { addParagraph, clearDictation, copyDictation, dictate } from "./dictation.js";
import { friendly, localError, notify, ui } from "./dom.js";
import { emit } from "./events.js";
import * as media from "./media.js";
import * as modes from "./modes.js";
import { initSettings } from "./settings.js";
import { checkSwitched, initModels } from "./models.js";
import { TAG_AUDIO } from "./protocol.js";
import { app } from "./state.js";
import { initStatus, pollBreakers, renderStatus, serverState, setServerState, showEngines } from "./status.js";

const RAW_MIC = new URLSearchParams(location.search).get("rawmic") === "1";
// Errors that answer a switch_mode: the mode in effect stays.
const SWITCH_ERRORS = new Set(["unknown_mode", "mode_unavailable", "residency_error"]);

const ctx = createAudioContext();
const player = new Player(ctx, {
  prebufferMs: 80,
  onReport: (turnId, playedMs, final) => {
    link.send({ type: "playback", turn_id: turnId, played_ms: playedMs });
    emit("playback-report", { turn_id: turnId, played_ms: playedMs, final });
  },
  onChange: () => renderStatus(),
});
let metricsShown = 0; // the waterfalls drawn, numbered from 1

// The browser tests' hooks (test-only): asked for before the page's scripts run, or with ?testhooks=1.
if (window.ariaTestHooks || new URLSearchParams(location.search).has("testhooks")) {
  const hooks = await import("./testhooks.js");
  hooks.install({
    player, ctx, openConversation, disconnect: link.disconnect, refreshHealth: pollBreakers, checkModel: checkSwitched,
  });
}

// -- server messages -------------------------------------------------------------------------------------

const handlers = {
  session(msg) {
    app.session = msg;
    const before = link.sessionStarted(msg.session_id);
    Object.assign(app.limits, msg.limits || {});
    ui.text.maxLength = app.limits.max_text_chars;
    player.setSampleRate(msg.audio_out?.sample_rate);
    media.setMicRate(msg.audio_in?.sample_rate);
    showEngines(msg.engines || {});
    document.getElementById("private-note").hidden = !msg.private; // session.persist = false
    ui.camera.disabled = !(msg.video_in?.max_fps > 0);
    modes.sessionModes(msg);
    if (!msg.resumed) ui.log.dataset.session = msg.session_id; // nothing to replay into this page
    if (msg.resumed && !opening.length) notify("Reconnected: the conversation continues.", "info");
    else if (before && before !== msg.session_id) notify("Started a new conversation.", "info");
    if (media.micActive()) link.send({ type: "control", action: "start" });
    conversations.setCurrent(msg.session_id);
    for (const resolve of opening.splice(0)) resolve(msg.session_id);
  },

  history(msg) {
    // A resumed session: show the conversation so far (once; a reconnect replays it again).
    if (ui.log.dataset.session === msg.session_id) return;
    ui.log.dataset.session = msg.session_id;
    chat.showHistory(msg.messages, (entry) => {
      if (entry.role !== "user" || !entry.mode || !modes.isDictation(entry.mode)) return false;
      addParagraph(entry.content); // dictated: back into the document
      return true;
    });
  },

  transcript(msg) {
    if (answerHeld() && msg.turn_id !== player.turnId) bargeIn();
    if (modes.isDictation()) dictate(msg);
    else chat.showTranscript(msg);
  },

  text_token(msg) {
    player.setTurn(msg.turn_id);
    chat.appendToken(msg.turn_id, msg.text);
  },

  response_done(msg) {
    // Cut short while ducked (speech over it took the floor): drop what is left of it now.
    if (msg.interrupted && player.ducked && msg.turn_id === player.turnId) bargeIn();
    player.endTurn(msg.turn_id);
    chat.finishAnswer(msg);
    conversations.refreshSoon(); // a first message gives it a title; the list is newest first
  },

  state(msg) {
    if (msg.state === "responding") player.setTurn(msg.turn_id);
    if (msg.state === "listening" && answerHeld()) bargeIn();
    app.stateTurn = msg.turn_id;
    setServerState(msg.state, msg.loading || [], msg.reason || "");
  },

  mode(msg) {
    modes.onModeMessage(msg);
  },

  metrics(msg) {
    metricsShown += 1;
    chat.showWaterfall(msg, metricsShown);
    chat.showModel(msg.turn_id, msg.extra?.model);
    conversations.refreshSoon(); // the turn is saved by now: its message count
  },

  notification(msg) {
    if (modes.onMonitorAlert(msg)) return;
    if (typeof msg.data?.mode === "string") modes.modeFromNotification(msg.data.mode);
    notify(msg.text, msg.level === "warning" ? "warning" : "info");
  },

  control_signal(msg) {
    chat.showControlSignal(msg);
  },

  tool_result(msg) {
    chat.showToolResult(msg);
  },

  error(msg) {
    if (SWITCH_ERRORS.has(msg.code)) modes.dropPendingSwitch();
    if (msg.code === "invalid_session") link.forgetSession(); // the next try starts afresh
    if (msg.turn_id) chat.markFailed(msg.turn_id);
    notify(friendly(msg.code, msg.message), msg.retryable ? "warning" : "error");
  },

  pong() {
    link.pong();
  },

  playback_control(msg) {
    player.duck(msg.command === "pause");
  },
};

function onMessage(msg) {
  emit("message", msg);
  const handle = handlers[msg.type];
  if (handle) handle(msg);
  else console.debug("aria: ignoring message", msg.type);
}

function onBinary(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < 2) return;
  if (bytes[0] === TAG_AUDIO) {
    emit("audio-frame");
    player.push(bytes.subarray(1));
  }
}

function onClose() {
  app.session = null;
  modes.dropPendingSwitch(); // the next session message says which mode is in effect
  if (player.playing) stopPlayback();
  setServerState("idle", []);
}

// -- playback and barge-in ---------------------------------------------------------------------------------

function stopPlayback() {
  emit("interrupt");
  player.stop(); // sends the final playback report of each turn it cuts
  renderStatus();
}

/** An answer is playing, or held (ducked) while the server judges speech over it. */
function answerHeld() {
  return player.playing || player.ducked;
}

/** The person started talking over the answer: the server stops it; silence it here at once. */
function bargeIn() {
  stopPlayback();
}

/** The Stop button (or Escape): silence now and ask the server to stop the answer. */
function interrupt() {
  const busy = player.playing || ["processing", "responding"].includes(serverState());
  if (!busy) return;
  stopPlayback();
  link.send({ type: "control", action: "interrupt" });
}

// -- conversations -----------------------------------------------------------------------------------------

const opening = []; // resolvers waiting for the next `session` message

/** Show another conversation (null: a new one): stop what plays, empty the log, reconnect with its id.
 * Resolves with the session id once the server has started it. */
function openConversation(sessionId, { push = true } = {}) {
  if (player.playing) stopPlayback();
  chat.clearLog();
  const started = new Promise((resolve) => opening.push(resolve));
  link.openSession(sessionId, { push });
  return started;
}

// -- typed text ------------------------------------------------------------------------------------------

function sendText(event) {
  event.preventDefault();
  resumeAudio(ctx);
  const text = ui.text.value.trim();
  if (!text) return;
  if (text.length > app.limits.max_text_chars) {
    localError("too_long", `That message is too long (at most ${app.limits.max_text_chars} characters).`);
    return;
  }
  if (player.playing) stopPlayback(); // new text interrupts the answer in progress
  if (!link.send({ type: "text", text })) {
    localError("not_connected", "Not connected, so the message was not sent. It is still in the box.");
    return;
  }
  chat.showUserText(text);
  ui.text.value = "";
}

// -- wiring ------------------------------------------------------------------------------------------------

function watchSound() {
  const show = () => { ui.sound.hidden = ctx.state === "running"; };
  ctx.onstatechange = show;
  show();
  ui.sound.onclick = () => resumeAudio(ctx);
  const unlock = () => resumeAudio(ctx);
  document.addEventListener("pointerdown", unlock, { capture: true });
  document.addEventListener("keydown", unlock, { capture: true });
}

initStatus(player);
initBanner();
media.initMedia({
  ctx,
  raw: RAW_MIC,
  stopPlayback: () => { if (player.playing) stopPlayback(); }, // an image interrupts the answer
  onCameraChange: modes.renderHint,
});
modes.initModes({ onChange: renderStatus });
initSettings();
initModels({ onChange: pollBreakers });
conversations.initConversations({ onOpen: openConversation });

ui.mic.addEventListener("click", media.toggleMic);
ui.stop.addEventListener("click", interrupt);
ui.composer.addEventListener("submit", sendText);
ui.image.addEventListener("change", media.sendImage);
ui.camera.addEventListener("click", media.toggleCamera);
ui.copy.addEventListener("click", copyDictation);
ui.clear.addEventListener("click", clearDictation);
document.addEventListener("keydown", (e) => { if (e.key === "Escape") interrupt(); });
window.addEventListener("online", link.reconnectNow);

watchSound();
renderStatus();
link.connect({ onMessage, onBinary, onClose });
pollBreakers();
setInterval(pollBreakers, 10000);
setInterval(checkSwitched, 5000); // a model switched from elsewhere
