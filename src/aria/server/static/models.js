// The model picker: `GET /models/llm` (Ollama's pulled models, GGUF files on disk, the configured one; the
// current one selected); choosing one `POST`s it and the server answers new turns with it. A model that
// cannot start is refused with the reason and the picker goes back to the one still answering.

import { notify, ui } from "./dom.js";
import { emit } from "./events.js";
import { app } from "./state.js";

let known = { current: null, switched_at: null, models: [] };
let loaded = false;
let explained = null; // the switched_at of the last switch the person was told about
let onSwitched = () => {};

function headers(extra = {}) {
  const token = new URLSearchParams(location.search).get("token");
  return { Accept: "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}), ...extra };
}

/** `onChange()` runs after a switch (the engine line and /health follow it). */
export function initModels({ onChange } = {}) {
  onSwitched = onChange || onSwitched;
  ui.model.addEventListener("change", () => choose(ui.model.value));
  ui.model.addEventListener("focus", () => { if (!ui.model.dataset.busy) refreshModels(); });
  refreshModels();
}

/** The model's own name for the engine line ("tiny-chat"), null when none or unknown. */
export function currentModel() {
  return app.llmModel || null;
}

export async function refreshModels() {
  let data;
  try {
    const res = await fetch("/models/llm", { headers: headers(), cache: "no-store" });
    if (!res.ok) return null;
    data = await res.json();
  } catch {
    return null;
  }
  const before = known.switched_at;
  if (!loaded) explained = data.switched_at; // switches before the page opened explain nothing now
  loaded = true;
  known = data;
  app.llmModel = data.model || null;
  emit("models", data);
  fill(data);
  return before;
}

function fill(data) {
  const groups = { configured: "Configured", ollama: "Ollama", gguf: "Downloaded (GGUF)", builtin: "Without a model" };
  const nodes = [];
  for (const [source, title] of Object.entries(groups)) {
    const items = data.models.filter((m) => m.source === source);
    if (!items.length) continue;
    const group = document.createElement("optgroup");
    group.label = title;
    for (const m of items) {
      const option = new Option(m.label + (m.vision ? " · sees images" : ""), m.name, false, m.current);
      option.dataset.source = m.source;
      if (m.size) option.title = `${(m.size / 2 ** 20).toFixed(m.size > 2 ** 30 ? 0 : 1)} MB`;
      group.append(option);
    }
    nodes.push(group);
  }
  ui.model.replaceChildren(...nodes);
  ui.model.value = data.current;
  ui.model.disabled = data.models.length < 2 || Boolean(ui.model.dataset.busy);
  const why = data.sources?.ollama?.error;
  ui.model.title = why ? `${why}. Start Ollama (ollama serve) to pick its models.` : "";
}

async function choose(name) {
  if (!name || name === known.current) return;
  const label = known.models.find((m) => m.name === name)?.label || name;
  ui.model.dataset.busy = "true";
  ui.model.disabled = true;
  ui.modelNote.textContent = `Loading ${label}…`;
  ui.modelNote.hidden = false;
  emit("model-switch", name);
  let res, body;
  try {
    res = await fetch("/models/llm", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ name }),
    });
    body = await res.json();
  } catch {
    body = { message: "the server could not be reached" };
  }
  delete ui.model.dataset.busy;
  ui.modelNote.hidden = true;
  if (res?.ok) {
    await refreshModels();
    explained = known.switched_at;
    notify(`New answers come from ${body.label || label}.`, "info");
  } else {
    emit("model-error", body);
    notify(`The model was not switched: ${body.message || "unknown error"}`, "error");
    ui.model.value = known.current; // the model still answering
    ui.model.disabled = false;
    await refreshModels();
  }
  onSwitched();
}

/** Poll `GET /models/llm/current`: a switch made elsewhere (another page, a script) is picked up and said
 * once; this page's own switches were said when made. */
export async function checkSwitched() {
  if (!loaded || ui.model.dataset.busy) return;
  let now;
  try {
    const res = await fetch("/models/llm/current", { headers: headers(), cache: "no-store" });
    if (!res.ok) return;
    now = await res.json();
  } catch {
    return;
  }
  if (!now.switched_at || now.switched_at === known.switched_at) return;
  await refreshModels();
  if (now.switched_at === explained) return;
  explained = now.switched_at;
  notify(`The language model was switched on the server: answers come from ${known.label || known.current}.`, "info");
  onSwitched();
}
