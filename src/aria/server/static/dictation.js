// The dictation document of a transcript-only mode (broadcast): each final transcript is a paragraph,
// the one being spoken shows as a partial paragraph at the end; Copy puts the text on the clipboard.

import { el, localError, ui } from "./dom.js";
import { emit } from "./events.js";

let partial = null; // {turnId, node}: the paragraph still being spoken
const paragraphs = []; // the final paragraphs' text, in order

/** Show the document (and hide the conversation log), or the other way round. */
export function showDictation(on) {
  ui.dictation.hidden = !on;
  ui.log.hidden = on;
}

/** A transcript message: update the partial paragraph, or append the final one. */
export function dictate(msg) {
  const text = msg.text.trim();
  if (partial && partial.turnId !== msg.turn_id) dropPartial(); // a turn that never became final
  if (!msg.final) {
    if (!text) return;
    if (!partial) {
      partial = { turnId: msg.turn_id, node: el("p", "partial") };
      partial.node.setAttribute("aria-busy", "true");
      ui.dictationText.append(partial.node);
    }
    partial.node.textContent = text;
    scroll();
    return;
  }
  dropPartial();
  if (text) addParagraph(text);
}

/** A paragraph from before (a resumed session's history). */
export function addParagraph(text) {
  const p = el("p", "", text);
  if (partial) ui.dictationText.insertBefore(p, partial.node);
  else ui.dictationText.append(p);
  paragraphs.push(text);
  emit("dictation", paragraphs);
  scroll();
}

function dropPartial() {
  partial?.node.remove();
  partial = null;
}

function scroll() {
  const box = ui.dictationText;
  if (box.scrollHeight - box.scrollTop - box.clientHeight < 120) box.scrollTop = box.scrollHeight;
}

/** The document as plain text: paragraphs separated by a blank line. */
export function dictationText() {
  return paragraphs.join("\n\n");
}

export async function copyDictation() {
  const text = dictationText();
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    if (!copyBySelection(text)) {
      localError("copy_failed", "The text could not be copied: select it and copy it by hand.");
      return;
    }
  }
  emit("copied", text);
  ui.copy.textContent = "Copied";
  setTimeout(() => { ui.copy.textContent = "Copy"; }, 1500);
}

/** The older way, for pages where the Clipboard API is refused (no permission, not a secure page). */
function copyBySelection(text) {
  const area = el("textarea", "visually-hidden");
  area.value = text;
  document.body.append(area);
  area.select();
  try {
    return document.execCommand("copy");
  } catch {
    return false;
  } finally {
    area.remove();
  }
}

export function clearDictation() {
  dropPartial();
  paragraphs.length = 0;
  emit("dictation", paragraphs);
  ui.dictationText.replaceChildren();
}
