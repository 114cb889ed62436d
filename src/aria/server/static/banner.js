// The limited-setup banner: while an engine of limited quality answers (the rule-based responder instead of
// a language model, PocketSphinx, espeak), it says what is limited, why, and the one command that fixes it
// (with a Copy button). From `GET /health`'s `limited` list. Dismissed, it stays hidden until the list
// changes (for this tab).

import { el, ui } from "./dom.js";
import { emit } from "./events.js";

const DISMISSED_KEY = "aria.banner.dismissed";
let current = "";

export function initBanner() {
  ui.bannerClose.addEventListener("click", dismiss);
}

/** Show `limited` (the `/health` entries: {slot, kind, engine, reason, detail, fix, command}). */
export function showLimited(limited) {
  current = limited.map((l) => `${l.slot}:${l.engine}:${l.command}`).join("|");
  ui.bannerItems.replaceChildren(...limited.map(item));
  const dismissed = sessionStorage.getItem(DISMISSED_KEY) === current;
  ui.banner.hidden = limited.length === 0 || dismissed;
  emit("banner", { limited, shown: !ui.banner.hidden });
}

function item(limitation) {
  const li = el("li");
  li.dataset.kind = limitation.kind;
  li.append(el("span", "what", limitation.reason));
  if (limitation.detail) li.append(" ", el("span", "why", limitation.detail));
  const fix = el("div", "fix");
  if (limitation.command) {
    fix.append("Fix: ", el("code", "", limitation.command));
    const copy = el("button", "small secondary", "Copy");
    copy.type = "button";
    copy.onclick = () => copyCommand(limitation.command, copy);
    fix.append(copy);
  }
  li.append(fix);
  if (limitation.fix) li.title = limitation.fix;
  return li;
}

async function copyCommand(command, button) {
  try {
    await navigator.clipboard.writeText(command);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Select and copy";
  }
  emit("copied", command);
}

function dismiss() {
  sessionStorage.setItem(DISMISSED_KEY, current);
  ui.banner.hidden = true;
  emit("banner", { shown: false });
}
