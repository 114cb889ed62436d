// The page's elements, toasts, the screen-reader announcer, and friendly words for error codes.

import { emit } from "./events.js";

const $ = (id) => document.getElementById(id);

export const ui = {
  status: $("status"), statusText: $("status-text"), conn: $("conn"), connText: $("conn-text"),
  sound: $("sound-btn"), alerts: $("alerts"), announcer: $("announcer"), log: $("log"), empty: $("empty-hint"),
  mic: $("mic-btn"), level: $("level"), stop: $("stop-btn"), composer: $("composer"),
  text: $("text-input"), send: $("send-btn"), image: $("image-input"), camera: $("camera-btn"),
  cameraPanel: $("camera-panel"), preview: $("camera-preview"), mode: $("mode-select"),
  modeDescription: $("mode-description"), modeHint: $("mode-hint"),
  voice: $("voice-select"), model: $("model-select"), modelNote: $("model-note"), engines: $("engines"), waterfalls: $("waterfalls"),
  monitor: $("monitor"), watchForm: $("watch-form"), watchInput: $("watch-input"),
  watchCurrent: $("watch-current"), monitorAlerts: $("monitor-alerts"),
  banner: $("banner"), bannerItems: $("banner-items"), bannerClose: $("banner-close"),
  modeUnavailable: $("mode-unavailable"),
  downloads: $("downloads"), downloadsTitle: $("downloads-title"), downloadList: $("download-list"),
  downloadsClose: $("downloads-close"),
  dictation: $("dictation"), dictationText: $("dictation-text"), copy: $("copy-btn"), clear: $("clear-btn"),
};

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

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
  mode_unavailable: "That mode cannot run on this server",
  residency_error: "There is not enough memory to load that mode's models",
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
const ENGINE_WORDS = {
  vad: "voice detection", stt: "speech recognition", llm: "language model", router: "router model",
  tts: "voice", vision: "vision model",
};

/** An engine kind, role or slot (`llm`, `llm:deep_dive`) in words. */
export function engineWords(entry) {
  const kind = String(entry).split(":", 1)[0];
  return ENGINE_WORDS[kind] || kind;
}

// Codes whose words end with the server's message (the words above have no full stop).
const WITH_MESSAGE = new Set(["invalid_config", "mode_unavailable", "residency_error"]);

export function friendly(code, message) {
  const words = ERROR_TEXT[code];
  if (WITH_MESSAGE.has(code)) return message ? `${words}: ${message}` : `${words}.`;
  if (words) return words;
  return message ? `Something went wrong: ${message}` : "Something went wrong.";
}

/** A toast at the top of the page; errors stay longer. At most three are shown. */
export function notify(text, level = "info") {
  const item = el("div", `alert ${level}`);
  item.setAttribute("role", level === "error" ? "alert" : "status");
  const close = el("button", "close", "×");
  close.type = "button";
  close.setAttribute("aria-label", "Dismiss");
  close.onclick = () => item.remove();
  item.append(el("span", "", text), close);
  ui.alerts.append(item);
  while (ui.alerts.children.length > 3) ui.alerts.firstElementChild.remove();
  setTimeout(() => item.remove(), level === "error" ? 12000 : 6000);
}

/** Read `text` out to screen readers now (an assertive live region, not shown). */
export function announce(text) {
  emit("announce", text);
  // A fresh node per announcement: some readers skip a live region whose text is set to the same value.
  ui.announcer.replaceChildren(el("p", "", text));
}

export function localError(code, text) {
  emit("local-error", { code, message: text, local: true });
  notify(text, "error");
}
