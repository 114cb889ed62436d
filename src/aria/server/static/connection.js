// The WebSocket to `/ws`: connect, reconnect with backoff and resume the session, send, ping. The session
// in use is in the address (`?session_id=`, so a conversation has a URL) and in sessionStorage (a reload).
// Each conversation's resume key (sent once, in its `session` message) is kept in localStorage: resuming
// it, and listing, exporting, renaming or deleting it, need the key (docs/protocol.md, Session ownership).
// No DOM here: the connection's state goes out as events (`connection`, `pong`, `sent`; events.js) and the
// status module draws the pill.

import { emit } from "./events.js";
import { frame } from "./protocol.js";

const SESSION_KEY = "aria.session_id";
const KEYS = "aria.session_keys"; // {session id: resume key}
const LAST = "aria.last_session"; // the conversation used last (aria serve --resume continues it)
// Close codes after which the page does not reconnect by itself: taken over by another tab, idle.
const PARKED = { 4409: "Opened in another tab: click to continue here", 4408: "Closed after inactivity: click to reconnect" };
const PING_EVERY_MS = 20000;

const backoff = { attempt: 0, timer: null, countdown: null, baseMs: 500, maxMs: 15000 };
const link = { ws: null, ready: false, pingTimer: null, pingSent: 0, handlers: null };

// A conversation opened by its URL: that session, whatever this tab had before. A link may carry the
// conversation's key after `#key=` (never sent to the server in the address): kept, then taken out.
const urlSession = new URLSearchParams(location.search).get("session_id");
if (urlSession) sessionStorage.setItem(SESSION_KEY, urlSession);
const hashKey = new URLSearchParams(location.hash.slice(1)).get("key");
if (urlSession && hashKey) {
  keepKey(urlSession, hashKey);
  history.replaceState(history.state, "", location.pathname + location.search);
}

/** Show `sessionId` in the address bar (or none), keeping the other parameters (token, rawmic). */
function showInAddress(sessionId, push = false) {
  const url = new URL(location.href);
  if (url.searchParams.get("session_id") === (sessionId || null)) return;
  if (sessionId) url.searchParams.set("session_id", sessionId);
  else url.searchParams.delete("session_id");
  if (push) history.pushState({ sessionId }, "", url);
  else history.replaceState(history.state, "", url);
}

/** The session this page shows (null before the first `session` message of a new conversation). */
export function currentSession() {
  return sessionStorage.getItem(SESSION_KEY);
}

/** Leave the current conversation for `sessionId` (null: a new one): close the socket and connect at once
 * (no backoff); the server resumes that session and sends its `history`. */
export function openSession(sessionId, { push = true } = {}) {
  if (sessionId) sessionStorage.setItem(SESSION_KEY, sessionId);
  else sessionStorage.removeItem(SESSION_KEY);
  showInAddress(sessionId, push);
  const old = link.ws;
  link.ws = null; // its close event is not a drop: no reconnect scheduled
  link.ready = false;
  clearInterval(link.pingTimer);
  old?.close(1000, "switching conversation");
  if (old) link.handlers.onClose();
  backoff.attempt = 0;
  connect();
}

function readKeys() {
  try {
    const keys = JSON.parse(localStorage.getItem(KEYS) || "{}");
    return keys && typeof keys === "object" ? keys : {};
  } catch {
    return {};
  }
}

/** The resume keys of this browser's conversations, by session id. */
export function sessionKeys() {
  return readKeys();
}

/** Forget a conversation's key (it was deleted). */
export function forgetKey(sessionId) {
  const keys = readKeys();
  delete keys[sessionId];
  localStorage.setItem(KEYS, JSON.stringify(keys));
}

function keepKey(sessionId, key) {
  const keys = readKeys();
  if (key) keys[sessionId] = key;
  localStorage.setItem(KEYS, JSON.stringify(keys));
  if (keys[sessionId]) localStorage.setItem(LAST, sessionId);
}

function wsUrl() {
  const url = new URL("/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const sid = sessionStorage.getItem(SESSION_KEY);
  if (sid) url.searchParams.set("session_id", sid);
  const key = readKeys()[sid || localStorage.getItem(LAST)];
  if (key) url.searchParams.set("key", key);
  const token = new URLSearchParams(location.search).get("token");
  if (token) url.searchParams.set("token", token);
  return url;
}

/** Open the socket. `handlers`: {onMessage(msg), onBinary(ArrayBuffer), onClose()}; kept for reconnects. */
export function connect(handlers = link.handlers) {
  link.handlers = handlers;
  clearTimeout(backoff.timer);
  clearInterval(backoff.countdown);
  backoff.timer = backoff.countdown = null;
  setConn("connecting", backoff.attempt ? "Reconnecting…" : "Connecting…");
  const ws = new WebSocket(wsUrl());
  ws.binaryType = "arraybuffer";
  link.ws = ws;
  ws.onmessage = (event) => {
    if (typeof event.data !== "string") {
      handlers.onBinary(event.data);
      return;
    }
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      console.warn("aria: a text frame that is not JSON", event.data);
      return;
    }
    if (msg.type === "session") keepKey(msg.session_id, msg.key);
    if (msg.type === "error" && msg.code === "session_locked") forgetSession(); // not ours: a new one
    handlers.onMessage(msg);
  };
  ws.onclose = (event) => {
    if (link.ws !== ws) return;
    link.ws = null;
    link.ready = false;
    clearInterval(link.pingTimer);
    handlers.onClose();
    if (PARKED[event.code]) park(event.code);
    else scheduleReconnect(event.code);
  };
}

/** Closed on purpose (taken over, idle): wait for the person to ask (`resume`), then connect again. */
function park(code) {
  setConn("offline", PARKED[code], code, true);
}

/** Connect again now, after a parked close or a drop (the backoff starts over). */
export function resume() {
  backoff.attempt = 0;
  reconnectNow();
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

export function reconnectNow() {
  if (!link.ws) connect();
}

/** Drop the connection (a test hook): the page reconnects and resumes its session. */
export function disconnect() {
  link.ws?.close(4000, "test");
}

/** The `session` message arrived: remember the session for resuming, start pinging, allow sending.
 * Returns the session id this page had before, if any. */
export function sessionStarted(sessionId) {
  const before = sessionStorage.getItem(SESSION_KEY);
  sessionStorage.setItem(SESSION_KEY, sessionId);
  showInAddress(sessionId);
  backoff.attempt = 0;
  link.ready = true;
  setConn("open", "Connected");
  clearInterval(link.pingTimer);
  link.pingTimer = setInterval(() => {
    link.pingSent = performance.now();
    send({ type: "ping", id: String(Math.round(link.pingSent)) });
  }, PING_EVERY_MS);
  return before;
}

/** The session could not be resumed: the next connection starts a new one. */
export function forgetSession() {
  sessionStorage.removeItem(SESSION_KEY);
  showInAddress(null);
}

export function pong() {
  if (link.pingSent) emit("pong", { roundTripMs: Math.round(performance.now() - link.pingSent) });
}

/** `connection` event: {state: "connecting" | "open" | "offline", words, code (the last close code),
 * parked (closed on purpose: waits for `resume`)}. */
function setConn(state, words, code = null, parked = false) {
  emit("connection", { state, words, code, parked });
}

export function isOpen() {
  return link.ws !== null && link.ws.readyState === WebSocket.OPEN && link.ready;
}

/** Bytes queued on the socket and not yet sent (0 when closed). */
export function buffered() {
  return link.ws?.bufferedAmount ?? 0;
}

export function send(msg) {
  if (!isOpen()) return false;
  link.ws.send(JSON.stringify(msg));
  emit("sent", msg);
  return true;
}

export function sendBinary(tag, payload) {
  if (!isOpen()) return false;
  link.ws.send(frame(tag, payload));
  return true;
}
