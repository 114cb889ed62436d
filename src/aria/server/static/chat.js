// The conversation log: the person's words (typed, spoken, with images), the answers as they stream,
// tool results, confirmations, system lines, a resumed session's history, and the latency waterfalls.

import { send } from "./connection.js";
import { el, friendly, ui } from "./dom.js";
import { renderHeard } from "./heard.js";
import { renderWaterfall } from "./waterfall.js";

const bubbles = new Map(); // `${role}:${turnId}` -> {root, text}

function scrollLog() {
  const log = ui.log;
  if (log.scrollHeight - log.scrollTop - log.clientHeight < 120) log.scrollTop = log.scrollHeight;
}

export function addBubble(role, key) {
  ui.empty?.remove();
  const root = el("li", `msg ${role}`);
  const text = el("div", "text");
  root.append(el("span", "who", role === "user" ? "You" : "Aria"), text);
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

/** What the person typed. */
export function showUserText(text) {
  addBubble("user").text.textContent = text;
}

/** An image the person sent, with its question. */
export function showUserImage(blob, question) {
  const bubble = addBubble("user");
  const img = el("img", "thumb");
  img.alt = question ? `Image sent with: ${question}` : "Image sent";
  img.src = URL.createObjectURL(blob);
  bubble.text.append(img);
  if (question) bubble.text.append(document.createTextNode(question));
}

/** A transcript: the person's bubble for the turn, updated in place until it is final. */
export function showTranscript(msg) {
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

export function appendToken(turnId, text) {
  assistantBubble(turnId).text.append(text);
  scrollLog();
}

export function finishAnswer(msg) {
  const bubble = assistantBubble(msg.turn_id, Boolean(msg.text));
  if (!bubble) return;
  if (!bubble.text.textContent && msg.text) bubble.text.textContent = msg.text;
  if (msg.interrupted) showInterrupted(bubble, bubble.text.textContent, msg.text);
  if (msg.error) {
    bubble.root.classList.add("failed");
    badge(bubble, friendly(msg.error), msg.error);
  }
}

/** Which engine (and model) gave a turn's answer, from its `metrics` message's `extra.model`. */
export function showModel(turnId, model) {
  const bubble = assistantBubble(turnId, false);
  if (!bubble || !model || bubble.root.querySelector(".model")) return;
  const tag = el("span", "model", `Answered by ${model}`);
  bubble.root.dataset.model = model;
  bubble.root.append(tag);
}

/** An error about a turn: mark its answer, if one is shown. */
export function markFailed(turnId) {
  assistantBubble(turnId, false)?.root.classList.add("failed");
}

/** A resumed session's history entries (user and assistant) as bubbles; `skip(entry)` leaves some out. */
export function showHistory(entries, skip = () => false) {
  for (const entry of entries) {
    if ((entry.role !== "user" && entry.role !== "assistant") || skip(entry)) continue;
    const bubble = addBubble(entry.role);
    bubble.text.textContent = entry.content;
    // `content` is what was heard; `generated` (when the server sends it) the whole answer.
    if (entry.interrupted) showInterrupted(bubble, entry.generated || entry.content, entry.content);
  }
}

/** An answer cut short: what was heard as usual, the rest of `answer` marked "not heard", and a badge. */
function showInterrupted(bubble, answer, heard) {
  bubble.root.classList.add("interrupted");
  const split = renderHeard(bubble.text, answer, heard);
  const title = split.heard ? `heard: “${split.heard.trim()}”` : "nothing was heard";
  badge(bubble, "interrupted", title);
}

function badge(bubble, words, title) {
  const tag = el("span", "badge", words);
  if (title) tag.title = title;
  bubble.root.append(tag);
}

export function systemLine(text, cls = "") {
  ui.empty?.remove();
  const li = el("li", `msg system ${cls}`, text);
  ui.log.append(li);
  scrollLog();
  return li;
}

export function showToolResult(msg) {
  systemLine(`${msg.ok ? "Used" : "Could not use"} ${msg.tool}.`, msg.ok ? "" : "warn");
}

/** A control signal as a system line; a confirmation gets Allow / Decline buttons that answer it. */
export function showControlSignal(msg) {
  const payload = msg.payload || {};
  const line = systemLine(payload.text || payload.message || `${msg.signal.replaceAll("_", " ")}`);
  if (!/confirm/.test(msg.signal)) return;
  const answer = (accept) => {
    send({ type: "control", action: "confirm_action", id: msg.id, accept });
    line.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    line.append(accept ? " · allowed" : " · declined");
  };
  for (const [words, accept] of [["Allow", true], ["Decline", false]]) {
    const b = el("button", accept ? "small" : "small secondary", words);
    b.type = "button";
    b.onclick = () => answer(accept);
    line.append(" ", b);
  }
}

/** The latency waterfall of turn number `number`; the latest three are kept, newest first. */
export function showWaterfall(msg, number) {
  ui.waterfalls.querySelector("p.muted")?.remove();
  const figure = renderWaterfall(msg.turn_id, msg.waterfall || {}, { label: `Turn ${number}` });
  ui.waterfalls.prepend(figure);
  while (ui.waterfalls.children.length > 3) ui.waterfalls.lastElementChild.remove();
}

/** Another conversation opens: an empty log (its `history` fills it) and no waterfalls of the last one. */
export function clearLog() {
  bubbles.clear();
  delete ui.log.dataset.session;
  ui.log.replaceChildren(...(ui.empty ? [ui.empty] : []));
  ui.waterfalls.replaceChildren(el("p", "muted small", "Timings of each turn appear here."));
}
