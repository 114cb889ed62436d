// Aria's page: the client of the WebSocket protocol v1 (`/ws`), the conversation log, microphone,
// camera, image upload, playback and barge-in.
// Plain ES modules, no build step, nothing from a CDN.

import { MicCapture, Player, createAudioContext, resumeAudio } from "./audio.js";
import { renderWaterfall } from "./waterfall.js";

const TAG_AUDIO = 0x01;
const TAG_VIDEO = 0x02;
const SESSION_KEY = "aria.session_id";
const PING_EVERY_MS = 20000;
const params = new URLSearchParams(location.search);
const RAW_MIC = params.get("rawmic") === "1";

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"), statusText: $("status-text"), conn: $("conn"), connText: $("conn-text"),
  sound: $("sound-btn"), alerts: $("alerts"), log: $("log"), empty: $("empty-hint"),
  mic: $("mic-btn"), level: $("level"), stop: $("stop-btn"), composer: $("composer"),
  text: $("text-input"), image: $("image-input"), camera: $("camera-btn"),
  cameraPanel: $("camera-panel"), preview: $("camera-preview"), mode: $("mode-select"),
  voice: $("voice-select"), model: $("model-select"), engines: $("engines"), waterfalls: $("waterfalls"),
};

// -- friendly words for error codes ----------------------------------------------------------------

const ERROR_TEXT = {
  invalid_json: "The page sent a message the server could not read. Reloading the page may help.",
  unknown_type: "The page and the server disagree about a message. Reloading the page may help.",
  invalid_message: "The server could not use a message from the page.",
  message_too_large: "That was too large to send.",
  frame_too_large: "That audio or camera frame was too large to send.",
  bad_audio: "The microphone audio could not be read.",
  bad_image: "That image could not be read. Try a JPEG or PNG picture.",
  unknown_frame_tag: "The server got data it does not understand.",
  empty_frame: "The server got an empty frame.",
  rate_limited: "Too much at once: please wait a moment and try again.",
  invalid_config: "That setting could not be changed",
  unknown_mode: "That mode is not available.",
  engine_unavailable: "Part of the assistant is not available right now.",
  internal_error: "Something went wrong on the server.",
  stt_failed: "Sorry, I could not make out what you said.",
  llm_failed: "The language model could not answer.",
  tts_failed: "Speech failed, so the answer is shown as text only.",
  engine_error: "One of the assistant's engines failed.",
  engine_timeout: "The assistant took too long to answer.",
  all_engines_failed: "None of the assistant's engines could handle that.",
  invalid_session: "The earlier conversation could not be resumed, so a new one starts.",
};

const STATE_WORDS = { idle: "Idle", listening: "Listening", thinking: "Thinking", speaking: "Speaking" };
const ENGINE_WORDS = { vad: "voice detection", stt: "speech recognition", llm: "language model", tts: "voice", vision: "vision" };

// -- state, and the hooks tests read -----------------------------------------------------------------

const app = {
  session: null, serverState: "idle", stateTurn: null, loading: [], mode: null, ws: null,
  limits: { max_audio_frame_bytes: 32000, max_image_bytes: 2 * 1024 * 1024, max_text_chars: 4000, max_message_bytes: 4 * 1024 * 1024 },
};

const ctx = createAudioContext();
const player = new Player(ctx, {
  prebufferMs: 80,
  onReport: (turnId, playedMs, final) => {
    send({ type: "playback", turn_id: turnId, played_ms: playedMs });
    test.playbackReports.push({ turn_id: turnId, played_ms: playedMs, final });
  },
  onChange: () => renderStatus(),
});
const mic = new MicCapture(ctx, {
  raw: RAW_MIC,
  onFrame: sendAudioFrame,
  onLevel: (rms, peak) => { meter.rms = rms; meter.peak = Math.max(meter.peak, peak); },
});

const test = {
  get samplesPlayed() { return player.samplesPlayed; },
  get playing() { return player.playing; },
  get underruns() { return player.underruns; },
  audioFramesReceived: 0,
  transcripts: [], // every transcript message, partial and final
  finalTranscripts: [], // the text of each final transcript
  tokens: "", // every text_token's text, concatenated
  responses: [], // response_done messages
  errors: [], // error messages from the server, and the page's own ({code, message, local: true})
  states: [], // the `state` of each state message, in order
  metrics: [], // metrics messages
  // extras
  connection: "connecting",
  get session() { return app.session; },
  get audioContextState() { return ctx.state; },
  audioFramesSent: 0,
  videoFramesSent: 0,
  playbackReports: [], // {turn_id, played_ms, final} as sent
  sent: [], // every JSON message sent
  notifications: [],
  received: [], // the last 300 JSON messages from the server, as {at: ms since page load, ...message}
  interrupts: 0, // playback stopped here (barge-in or the Stop button)
  disconnect: () => app.ws?.close(4000, "test"), // drop the connection: the page reconnects and resumes
};
window.ariaTest = test;

// -- connection ----------------------------------------------------------------------------------------

const backoff = { attempt: 0, timer: null, countdown: null, baseMs: 500, maxMs: 15000 };
let pingTimer = null;
let pingSent = 0;

function wsUrl() {
  const url = new URL("/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const sid = sessionStorage.getItem(SESSION_KEY);
  if (sid) url.searchParams.set("session_id", sid);
  if (params.get("token")) url.searchParams.set("token", params.get("token"));
  return url;
}

function connect() {
  clearTimeout(backoff.timer);
  clearInterval(backoff.countdown);
  backoff.timer = backoff.countdown = null;
  setConn("connecting", backoff.attempt ? "Reconnecting…" : "Connecting…");
  const ws = new WebSocket(wsUrl());
  ws.binaryType = "arraybuffer";
  app.ws = ws;
  ws.onmessage = (event) => {
    if (typeof event.data !== "string") {
      onBinary(event.data);
      return;
    }
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      console.warn("aria: a text frame that is not JSON", event.data);
      return;
    }
    onMessage(msg);
  };
  ws.onclose = (event) => {
    if (app.ws !== ws) return;
    app.ws = null;
    app.session = null;
    clearInterval(pingTimer);
    if (player.playing) stopPlayback();
    setServerState("idle", []);
    scheduleReconnect(event.code);
  };
}

/** Exponential backoff with jitter: 0.5-1x of 0.5 s, 1 s, 2 s, ... up to 15 s; reset by a session. */
function scheduleReconnect(code) {
  const ceiling = Math.min(backoff.maxMs, backoff.baseMs * 2 ** backoff.attempt);
  const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
  backoff.attempt += 1;
  const due = Date.now() + delay;
  const show = () => {
    const s = Math.max(0, Math.ceil((due - Date.now()) / 1000));
    setConn("offline", navigator.onLine === false ? "Offline" : `Disconnected: retrying in ${s} s`, code);
  };
  show();
  backoff.countdown = setInterval(show, 1000);
  backoff.timer = setTimeout(connect, delay);
}

function reconnectNow() {
  if (!app.ws) connect();
}

function setConn(state, words, code) {
  test.connection = state;
  ui.conn.dataset.conn = state;
  ui.connText.textContent = words;
  ui.conn.title = code ? `last close code ${code}` : "";
}

function isOpen() {
  return app.ws !== null && app.ws.readyState === WebSocket.OPEN && app.session !== null;
}

function send(msg) {
  if (!isOpen()) return false;
  app.ws.send(JSON.stringify(msg));
  test.sent.push(msg);
  return true;
}

function sendBinary(tag, payload) {
  if (!isOpen()) return false;
  const frame = new Uint8Array(payload.byteLength + 1);
  frame[0] = tag;
  frame.set(new Uint8Array(payload), 1);
  app.ws.send(frame);
  return true;
}

// -- server messages -------------------------------------------------------------------------------------

const handlers = {
  session(msg) {
    const hadSession = sessionStorage.getItem(SESSION_KEY);
    app.session = msg;
    sessionStorage.setItem(SESSION_KEY, msg.session_id);
    backoff.attempt = 0;
    Object.assign(app.limits, msg.limits || {});
    ui.text.maxLength = app.limits.max_text_chars;
    player.setSampleRate(msg.audio_out?.sample_rate);
    mic.targetRate = msg.audio_in?.sample_rate || 16000;
    setConn("open", "Connected");
    fillModes(msg.modes || [], msg.mode);
    showEngines(msg.engines || {});
    ui.camera.disabled = !(msg.video_in?.max_fps > 0);
    if (!msg.resumed) ui.log.dataset.session = msg.session_id; // nothing to replay into this page
    if (msg.resumed) notify("Reconnected: the conversation continues.", "info");
    else if (hadSession && hadSession !== msg.session_id) notify("Started a new conversation.", "info");
    clearInterval(pingTimer);
    pingTimer = setInterval(() => {
      pingSent = performance.now();
      send({ type: "ping", id: String(Math.round(pingSent)) });
    }, PING_EVERY_MS);
    if (mic.active) send({ type: "control", action: "start" });
  },

  history(msg) {
    // A resumed session: show the conversation so far (once; a reconnect replays it again).
    test.history = msg.messages;
    if (ui.log.dataset.session === msg.session_id) return;
    ui.log.dataset.session = msg.session_id;
    for (const entry of msg.messages) {
      if (entry.role !== "user" && entry.role !== "assistant") continue;
      const bubble = addBubble(entry.role);
      bubble.text.textContent = entry.content;
      if (entry.interrupted) {
        bubble.root.classList.add("interrupted");
        badge(bubble, "interrupted", `heard: “${entry.content}”`);
      }
    }
  },

  transcript(msg) {
    test.transcripts.push(msg);
    if (msg.final) test.finalTranscripts.push(msg.text);
    if (player.playing && msg.turn_id !== player.turnId) bargeIn();
    showTranscript(msg);
  },

  text_token(msg) {
    test.tokens += msg.text;
    player.setTurn(msg.turn_id);
    assistantBubble(msg.turn_id).text.append(msg.text);
    scrollLog();
  },

  response_done(msg) {
    test.responses.push(msg);
    player.endTurn(msg.turn_id);
    finishAnswer(msg);
  },

  state(msg) {
    test.states.push(msg.state);
    if (msg.state === "responding") player.setTurn(msg.turn_id);
    if (msg.state === "listening" && player.playing) bargeIn();
    app.stateTurn = msg.turn_id;
    setServerState(msg.state, msg.loading || []);
  },

  metrics(msg) {
    test.metrics.push(msg);
    showWaterfall(msg);
  },

  notification(msg) {
    test.notifications.push(msg);
    if (typeof msg.data?.mode === "string") selectMode(msg.data.mode);
    notify(msg.text, msg.level === "warning" ? "warning" : "info");
  },

  control_signal(msg) {
    showControlSignal(msg);
  },

  tool_result(msg) {
    systemLine(`${msg.ok ? "Used" : "Could not use"} ${msg.tool}.`, msg.ok ? "" : "warn");
  },

  error(msg) {
    test.errors.push(msg);
    if (msg.code === "unknown_mode") selectMode(app.mode);
    if (msg.code === "invalid_session") sessionStorage.removeItem(SESSION_KEY); // the next try starts afresh
    if (msg.turn_id) assistantBubble(msg.turn_id, false)?.root.classList.add("failed");
    notify(friendly(msg.code, msg.message), msg.retryable ? "warning" : "error");
  },

  pong() {
    if (pingSent) ui.conn.title = `round trip ${Math.round(performance.now() - pingSent)} ms`;
  },
};

function onMessage(msg) {
  test.received.push({ at: Math.round(performance.now()), ...msg });
  if (test.received.length > 300) test.received.shift();
  const handle = handlers[msg.type];
  if (handle) handle(msg);
  else console.debug("aria: ignoring message", msg.type);
}

function onBinary(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < 2) return;
  if (bytes[0] === TAG_AUDIO) {
    test.audioFramesReceived += 1;
    player.push(bytes.subarray(1));
  }
}

function friendly(code, message) {
  const words = ERROR_TEXT[code];
  if (code === "invalid_config" && message) return `${words}: ${message}`;
  if (words) return words;
  return message ? `Something went wrong: ${message}` : "Something went wrong.";
}

// -- status ------------------------------------------------------------------------------------------------

function setServerState(state, loading) {
  app.serverState = state;
  app.loading = loading;
  renderStatus();
}

/** The server's state, except that an answer stopped here (barge-in, Stop) no longer counts as one. */
function serverState() {
  const cut = app.serverState === "responding" && player.discarded.has(app.stateTurn);
  return cut ? "idle" : app.serverState;
}

function renderStatus() {
  const state = serverState();
  const shown = player.playing ? "speaking"
    : { listening: "listening", processing: "thinking", responding: "speaking" }[state] || "idle";
  ui.status.dataset.state = shown;
  let words = STATE_WORDS[shown];
  if (app.loading.length) words += ` · loading ${app.loading.map((k) => ENGINE_WORDS[k] || k).join(", ")}`;
  ui.statusText.textContent = words;
  ui.stop.disabled = !(player.playing || state === "processing" || state === "responding");
}

function showEngines(engines) {
  const parts = Object.entries(engines).map(([kind, e]) => {
    const what = ENGINE_WORDS[kind] || kind;
    if (e.state === "ready") return `${what}: ${e.name || "ready"}`;
    if (e.state === "loading") return `${what}: loading…`;
    return `${what}: unavailable`;
  });
  ui.engines.textContent = parts.join(" · ");
  ui.engines.title = Object.entries(engines).map(([k, e]) => `${k}: ${e.detail || e.state}`).join("\n");
}

// -- alerts ----------------------------------------------------------------------------------------------

function notify(text, level = "info") {
  const item = document.createElement("div");
  item.className = `alert ${level}`;
  item.setAttribute("role", level === "error" ? "alert" : "status");
  const words = document.createElement("span");
  words.textContent = text;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "close";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  close.onclick = () => item.remove();
  item.append(words, close);
  ui.alerts.append(item);
  while (ui.alerts.children.length > 3) ui.alerts.firstElementChild.remove();
  setTimeout(() => item.remove(), level === "error" ? 12000 : 6000);
}

function localError(code, text) {
  test.errors.push({ code, message: text, local: true });
  notify(text, "error");
}

// -- conversation log ------------------------------------------------------------------------------------

const bubbles = new Map(); // `${role}:${turnId}` -> {root, text}

function scrollLog() {
  const log = ui.log;
  if (log.scrollHeight - log.scrollTop - log.clientHeight < 120) log.scrollTop = log.scrollHeight;
}

function addBubble(role, key) {
  ui.empty?.remove();
  const root = document.createElement("li");
  root.className = `msg ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "You" : "Aria";
  const text = document.createElement("div");
  text.className = "text";
  root.append(who, text);
  ui.log.append(root);
  const bubble = { root, text };
  if (key) bubbles.set(key, bubble);
  if (bubbles.size > 400) bubbles.delete(bubbles.keys().next().value);
  scrollLog();
  return bubble;
}

function assistantBubble(turnId, create = true) {
  const key = `assistant:${turnId}`;
  return bubbles.get(key) || (create ? addBubble("assistant", key) : null);
}

function showTranscript(msg) {
  const key = `user:${msg.turn_id}`;
  let bubble = bubbles.get(key);
  if (!msg.final && !msg.text) return;
  if (msg.final && !msg.text.trim()) {
    bubble?.root.remove();
    bubbles.delete(key);
    return;
  }
  bubble ||= addBubble("user", key);
  bubble.root.classList.toggle("partial", !msg.final);
  bubble.root.setAttribute("aria-busy", String(!msg.final));
  bubble.text.textContent = msg.text;
  scrollLog();
}

function finishAnswer(msg) {
  const bubble = assistantBubble(msg.turn_id, Boolean(msg.text));
  if (!bubble) return;
  if (!bubble.text.textContent && msg.text) bubble.text.textContent = msg.text;
  if (msg.interrupted) {
    bubble.root.classList.add("interrupted");
    badge(bubble, "interrupted", msg.text ? `heard: “${msg.text}”` : "nothing was heard");
  }
  if (msg.error) {
    bubble.root.classList.add("failed");
    badge(bubble, friendly(msg.error), msg.error);
  }
}

function badge(bubble, words, title) {
  const tag = document.createElement("span");
  tag.className = "badge";
  tag.textContent = words;
  if (title) tag.title = title;
  bubble.root.append(tag);
}

function systemLine(text, cls = "") {
  ui.empty?.remove();
  const li = document.createElement("li");
  li.className = `msg system ${cls}`;
  li.textContent = text;
  ui.log.append(li);
  scrollLog();
  return li;
}

function showControlSignal(msg) {
  const payload = msg.payload || {};
  const line = systemLine(payload.text || payload.message || `${msg.signal.replaceAll("_", " ")}`);
  if (!/confirm/.test(msg.signal)) return;
  const answer = (accept) => {
    send({ type: "control", action: "confirm_action", id: msg.id, accept });
    line.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    line.append(accept ? " · allowed" : " · declined");
  };
  for (const [words, accept] of [["Allow", true], ["Decline", false]]) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = accept ? "small" : "small secondary";
    b.textContent = words;
    b.onclick = () => answer(accept);
    line.append(" ", b);
  }
}

function showWaterfall(msg) {
  ui.waterfalls.querySelector("p.muted")?.remove();
  const number = test.metrics.length;
  const figure = renderWaterfall(msg.turn_id, msg.waterfall || {}, { label: `Turn ${number}` });
  ui.waterfalls.prepend(figure);
  while (ui.waterfalls.children.length > 3) ui.waterfalls.lastElementChild.remove();
}

// -- playback and barge-in ---------------------------------------------------------------------------------

function stopPlayback() {
  test.interrupts += 1;
  player.stop(); // sends the final playback report of each turn it cuts
  renderStatus();
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
  send({ type: "control", action: "interrupt" });
}

// -- microphone --------------------------------------------------------------------------------------------

const meter = { rms: 0, peak: 0, shown: 0 };

function sendAudioFrame(pcm) {
  if (pcm.byteLength === 0 || pcm.byteLength > app.limits.max_audio_frame_bytes) return;
  if (sendBinary(TAG_AUDIO, pcm)) test.audioFramesSent += 1;
}

async function toggleMic() {
  resumeAudio(ctx);
  if (mic.active) {
    mic.stop();
    setMicUi(false);
    return;
  }
  ui.mic.disabled = true;
  try {
    await mic.start();
    setMicUi(true);
    send({ type: "control", action: "start" });
  } catch (err) {
    const words = {
      NotAllowedError: "The microphone is blocked. Allow it in the browser's site settings to talk.",
      NotFoundError: "No microphone was found.",
      NotReadableError: "The microphone is in use by another program.",
      InsecureContextError: "The microphone needs a secure page: open Aria over https or on localhost.",
    }[err.name] || `The microphone could not start: ${err.message}`;
    localError("mic_failed", words);
  } finally {
    ui.mic.disabled = false;
  }
}

function setMicUi(on) {
  ui.mic.setAttribute("aria-pressed", String(on));
  ui.mic.setAttribute("aria-label", on ? "Stop microphone" : "Start microphone");
  ui.mic.classList.toggle("on", on);
}

function drawMeter() {
  const c = ui.level;
  const width = Math.round(c.clientWidth * devicePixelRatio);
  const height = Math.round(c.clientHeight * devicePixelRatio);
  if (width > 0 && (c.width !== width || c.height !== height)) Object.assign(c, { width, height });
  const g = c.getContext("2d");
  const db = meter.rms > 0 ? 20 * Math.log10(meter.rms) : -100;
  const target = Math.max(0, Math.min(1, (db + 60) / 60));
  meter.shown = target > meter.shown ? target : meter.shown * 0.9 + target * 0.1;
  const peak = Math.max(0, Math.min(1, (20 * Math.log10(Math.max(meter.peak, 1e-5)) + 60) / 60));
  meter.peak *= 0.95;
  const style = getComputedStyle(c);
  g.clearRect(0, 0, c.width, c.height);
  g.fillStyle = style.getPropertyValue("--meter-bg") || "#8884";
  g.fillRect(0, 0, c.width, c.height);
  g.fillStyle = mic.active ? style.getPropertyValue("--meter-fg") || "#2a7" : "#8888";
  g.fillRect(0, 0, Math.round(meter.shown * c.width), c.height);
  if (mic.active) g.fillRect(Math.round(peak * (c.width - 2)), 0, 2, c.height);
  requestAnimationFrame(drawMeter);
}

// -- text, image, camera ----------------------------------------------------------------------------------

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
  if (!send({ type: "text", text })) {
    localError("not_connected", "Not connected, so the message was not sent. It is still in the box.");
    return;
  }
  addBubble("user").text.textContent = text;
  ui.text.value = "";
}

function readAsBase64(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

/** The image as a JPEG/PNG blob within `maxBytes`: as is when it already is, else re-encoded smaller. */
async function fitImage(file, maxBytes) {
  if ((file.type === "image/jpeg" || file.type === "image/png") && file.size <= maxBytes) return file;
  const bitmap = await createImageBitmap(file);
  let scale = Math.min(1, 1600 / Math.max(bitmap.width, bitmap.height));
  for (let attempt = 0; attempt < 5; attempt++, scale *= 0.7) {
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((r) => canvas.toBlob(r, "image/jpeg", 0.85));
    if (blob && blob.size <= maxBytes) return blob;
  }
  throw new Error("image too large");
}

async function sendImage() {
  const file = ui.image.files?.[0];
  ui.image.value = "";
  if (!file) return;
  resumeAudio(ctx);
  if (!isOpen()) {
    localError("not_connected", "Not connected, so the image was not sent.");
    return;
  }
  // The JSON message carries base64 (4/3 of the bytes): keep it under the message limit too.
  const maxBytes = Math.min(app.limits.max_image_bytes, Math.floor(((app.limits.max_message_bytes - 4096) * 3) / 4));
  let blob;
  try {
    blob = await fitImage(file, maxBytes);
  } catch {
    localError("bad_image", "That image could not be used. Try a smaller JPEG or PNG picture.");
    return;
  }
  const question = ui.text.value.trim() || null;
  const format = blob.type === "image/png" ? "png" : "jpeg";
  if (player.playing) stopPlayback();
  if (!send({ type: "image", data: await readAsBase64(blob), format, text: question })) return;
  ui.text.value = "";
  const bubble = addBubble("user");
  const img = document.createElement("img");
  img.className = "thumb";
  img.alt = question ? `Image sent with: ${question}` : "Image sent";
  img.src = URL.createObjectURL(blob);
  bubble.text.append(img);
  if (question) bubble.text.append(document.createTextNode(question));
}

const camera = { stream: null, timer: null, busy: false, canvas: document.createElement("canvas") };

async function toggleCamera() {
  if (camera.stream) {
    stopCamera();
    return;
  }
  try {
    camera.stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } } });
  } catch (err) {
    localError("camera_failed", err.name === "NotAllowedError"
      ? "The camera is blocked. Allow it in the browser's site settings."
      : `The camera could not start: ${err.message}`);
    return;
  }
  ui.preview.srcObject = camera.stream;
  ui.preview.play().catch(() => {});
  ui.cameraPanel.hidden = false;
  ui.camera.setAttribute("aria-pressed", "true");
  ui.camera.setAttribute("aria-label", "Turn camera off");
  const fps = Math.min(1, app.session?.video_in?.max_fps || 1);
  camera.timer = setInterval(sendCameraFrame, Math.round(1000 / fps));
}

function stopCamera() {
  clearInterval(camera.timer);
  camera.stream?.getTracks().forEach((t) => t.stop());
  camera.stream = null;
  ui.preview.srcObject = null;
  ui.cameraPanel.hidden = true;
  ui.camera.setAttribute("aria-pressed", "false");
  ui.camera.setAttribute("aria-label", "Turn camera on");
}

async function sendCameraFrame() {
  const v = ui.preview;
  if (camera.busy || !isOpen() || v.readyState < 2 || !v.videoWidth) return;
  if (app.ws.bufferedAmount > 512 * 1024) return; // the link is slow: skip a frame rather than queue it
  camera.busy = true;
  try {
    const scale = Math.min(1, 640 / v.videoWidth);
    const c = camera.canvas;
    c.width = Math.round(v.videoWidth * scale);
    c.height = Math.round(v.videoHeight * scale);
    c.getContext("2d").drawImage(v, 0, 0, c.width, c.height);
    const blob = await new Promise((r) => c.toBlob(r, "image/jpeg", 0.7));
    if (blob && blob.size <= app.limits.max_image_bytes && sendBinary(TAG_VIDEO, await blob.arrayBuffer())) {
      test.videoFramesSent += 1;
    }
  } finally {
    camera.busy = false;
  }
}

// -- settings: mode, voice, model ------------------------------------------------------------------------

function fillModes(modes, current) {
  const list = modes.length ? modes : current ? [current] : [];
  ui.mode.replaceChildren(...list.map((m) => new Option(m.replaceAll("_", " "), m)));
  ui.mode.disabled = list.length < 2;
  selectMode(current);
}

function selectMode(mode) {
  if (!mode) return;
  app.mode = mode;
  ui.mode.value = mode;
}

function switchMode() {
  if (!send({ type: "control", action: "switch_mode", mode: ui.mode.value })) selectMode(app.mode);
  else app.mode = ui.mode.value;
}

/** `GET /models`, read loosely: a list of rows, or {voices, models, llm, tts, ...}; rows are strings or
 * objects with a name/id and a kind. Missing or unreadable: the pickers stay on "Default". */
async function loadPickers() {
  let data;
  try {
    const res = await fetch("/models", { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!res.ok) return;
    data = await res.json();
  } catch {
    return;
  }
  const rows = Array.isArray(data) ? data : [
    ...(Array.isArray(data.models) ? data.models : []),
    ...["llm", "tts"].flatMap((k) => (Array.isArray(data[k]) ? data[k].map((r) => withKind(r, k)) : [])),
  ];
  const voices = [...(Array.isArray(data.voices) ? data.voices : []), ...rows.filter((r) => r?.kind === "tts")];
  const models = [
    ...(Array.isArray(data.llm_models) ? data.llm_models : []),
    ...rows.filter((r) => r?.kind === "llm"),
  ];
  fillPicker(ui.voice, voices);
  fillPicker(ui.model, models);
}

function withKind(row, kind) {
  return typeof row === "string" ? { name: row, kind } : { kind, ...row };
}

function fillPicker(select, items) {
  const options = [new Option("Default", "")];
  const seen = new Set();
  for (const item of items) {
    const value = typeof item === "string" ? item : item?.id ?? item?.name;
    if (!value || seen.has(value)) continue;
    seen.add(value);
    const label = typeof item === "string" ? item : item.label || item.name || value;
    const option = new Option(item?.present === false ? `${label} (not downloaded)` : label, value);
    if (item?.config && typeof item.config === "object") option.dataset.config = JSON.stringify(item.config);
    options.push(option);
  }
  select.replaceChildren(...options);
  select.disabled = options.length < 2;
}

function pick(select, key) {
  const option = select.selectedOptions[0];
  if (!option?.value) return;
  const config = option.dataset.config ? JSON.parse(option.dataset.config) : { [key]: option.value };
  send({ type: "control", action: "update_config", config });
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

ui.mic.addEventListener("click", toggleMic);
ui.stop.addEventListener("click", interrupt);
ui.composer.addEventListener("submit", sendText);
ui.image.addEventListener("change", sendImage);
ui.camera.addEventListener("click", toggleCamera);
ui.mode.addEventListener("change", switchMode);
ui.voice.addEventListener("change", () => pick(ui.voice, "tts.voice"));
ui.model.addEventListener("change", () => pick(ui.model, "llm.options.model"));
document.addEventListener("keydown", (e) => { if (e.key === "Escape") interrupt(); });
window.addEventListener("online", reconnectNow);

watchSound();
renderStatus();
requestAnimationFrame(drawMeter);
loadPickers();
connect();
