// The voice picker: filled from `GET /models`; picking one sends a live `update_config` (models.js: the
// language model picker).

import { send } from "./connection.js";
import { ui } from "./dom.js";
import { emit } from "./events.js";
import { groupVoices } from "./voices.js";

export function initSettings() {
  ui.voice.addEventListener("change", () => pick(ui.voice, "tts.voice"));
  loadPickers();
}

/** `GET /models`, read loosely: a list of rows, or {voices, tts, ...}; rows are strings or objects with a
 * name/id and a kind. Missing or unreadable: the picker stays on "Default". */
async function loadPickers() {
  let data;
  try {
    const token = new URLSearchParams(location.search).get("token");
    const headers = { Accept: "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) };
    const res = await fetch("/models", { headers, cache: "no-store" });
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
  if (voices.every((v) => typeof v === "string")) fillVoices(voices);
  else fillPicker(ui.voice, voices);
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

/** Voice ids as names grouped by language (one group per language; a lone voice of a language too). */
function fillVoices(ids) {
  const options = [new Option("Default", "")];
  const groups = groupVoices([...new Set(ids)]);
  emit("voice-groups", groups);
  for (const [language, voices] of groups) {
    const group = document.createElement("optgroup");
    group.label = language;
    for (const voice of voices) {
      const option = new Option(voice.name, voice.id);
      option.title = voice.id;
      group.append(option);
    }
    options.push(group);
  }
  ui.voice.replaceChildren(...options);
  ui.voice.disabled = ids.length < 1;
}

function pick(select, key) {
  const option = select.selectedOptions[0];
  if (!option?.value) return;
  const config = option.dataset.config ? JSON.parse(option.dataset.config) : { [key]: option.value };
  send({ type: "control", action: "update_config", config });
}
