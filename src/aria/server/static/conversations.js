// The conversation list: new chat, past conversations (title, when, how many messages; newest first) from
// `GET /sessions`, open one (the page reconnects with its `?session_id=` and the server sends its history),
// rename (`PATCH /sessions/{id}`), export (`/sessions/{id}/export?format=markdown`) and delete (`DELETE`,
// after a confirmation). On a narrow screen the list is a drawer behind the "Chats" button. Every request
// carries this browser's conversation keys (`X-Aria-Session-Key`): the server lists and opens only those.

import { currentSession, forgetKey, sessionKeys } from "./connection.js";
import { el, localError, notify } from "./dom.js";
import { emit } from "./events.js";

const $ = (id) => document.getElementById(id);
const list = { rows: [], timer: null, open: null, panel: null, items: null, current: null };

function token() {
  return new URLSearchParams(location.search).get("token");
}

function authHeaders() {
  const headers = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const keys = Object.values(sessionKeys());
  if (keys.length) headers["X-Aria-Session-Key"] = keys.join(",");
  return headers;
}

async function api(method, path, body) {
  const headers = { Accept: "application/json", ...authHeaders() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.message || `${method} ${path}: HTTP ${res.status}`);
  return data;
}

/** `onOpen(sessionId | null)`: show that conversation (null: a new one). */
export function initConversations({ onOpen }) {
  list.open = onOpen;
  list.panel = $("conversations");
  list.items = $("conv-list");
  $("new-chat").addEventListener("click", () => { closeDrawer(); onOpen(null); });
  $("chats-btn").addEventListener("click", () => toggleDrawer());
  $("conv-backdrop").addEventListener("click", () => closeDrawer());
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeDrawer(); });
  window.addEventListener("popstate", () => {
    const wanted = new URLSearchParams(location.search).get("session_id");
    if (wanted !== currentSession()) onOpen(wanted, { push: false });
  });
  refresh();
}

function toggleDrawer(open = !document.body.classList.contains("chats-open")) {
  document.body.classList.toggle("chats-open", open);
  $("chats-btn").setAttribute("aria-expanded", String(open));
  if (open) list.items.querySelector("[aria-current] .conv-open, .conv-open")?.focus();
}

function closeDrawer() {
  if (document.body.classList.contains("chats-open")) toggleDrawer(false);
}

/** The session in use changed (a `session` message): mark it, and list it once it has messages. */
export function setCurrent(sessionId) {
  list.current = sessionId;
  render();
  refreshSoon();
}

/** Fetch the list again shortly (a turn ended: a new title, a new time). */
export function refreshSoon(delayMs = 300) {
  clearTimeout(list.timer);
  list.timer = setTimeout(refresh, delayMs);
}

export async function refresh(force = false) {
  try {
    const data = await api("GET", "/sessions");
    list.rows = Array.isArray(data.sessions) ? data.sessions : [];
  } catch (err) {
    console.warn("aria: could not list conversations", err);
    return;
  }
  render(force);
}

/** Draw the list; an item being renamed or asked about is left alone unless `force`. */
function render(force = false) {
  emit("conversations", list.rows);
  if (!force && list.items.querySelector(".conv-rename, .conv-confirm")) return;
  const rows = [...list.rows];
  if (list.current && !rows.some((r) => r.session_id === list.current)) {
    rows.unshift({ session_id: list.current, title: "", messages: 0, updated: null, fresh: true });
  }
  const focused = document.activeElement?.closest?.(".conv")?.dataset.id;
  list.items.replaceChildren(...rows.map(item));
  if (focused) list.items.querySelector(`.conv[data-id="${CSS.escape(focused)}"] .conv-open`)?.focus();
}

function item(row) {
  const li = el("li", "conv");
  li.dataset.id = row.session_id;
  const current = row.session_id === list.current;
  if (current) li.setAttribute("aria-current", "true");
  const open = el("button", "conv-open");
  open.type = "button";
  const title = row.title || (row.fresh ? "New conversation" : "Untitled conversation");
  open.append(el("span", "conv-title", title), el("span", "conv-meta", meta(row)));
  open.title = title;
  open.onclick = () => {
    closeDrawer();
    if (!current) list.open(row.session_id);
  };
  li.append(open);
  if (!row.fresh) li.append(actions(li, row, title));
  return li;
}

function meta(row) {
  if (row.fresh) return "now";
  const when = row.updated ? relative(row.updated * 1000) : "";
  const count = `${row.messages} message${row.messages === 1 ? "" : "s"}`;
  return when ? `${when} · ${count}` : count;
}

function relative(ms) {
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  const date = new Date(ms);
  const today = new Date();
  if (date.toDateString() === today.toDateString()) {
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  return date.toLocaleDateString([], { month: "short", day: "numeric" });
}

function smallButton(words, label, onclick, cls = "") {
  const b = el("button", `conv-act ${cls}`.trim(), words);
  b.type = "button";
  b.setAttribute("aria-label", label);
  b.title = label;
  b.onclick = onclick;
  return b;
}

function actions(li, row, title) {
  const bar = el("div", "conv-actions");
  const href = new URL(`/sessions/${encodeURIComponent(row.session_id)}/export`, location.href);
  href.searchParams.set("format", "markdown");
  if (token()) href.searchParams.set("token", token());
  const exp = el("a", "conv-act", "Export");
  exp.href = href;
  exp.download = `${(title || "conversation").replace(/[^\w\- ]+/g, "").trim().slice(0, 60) || "conversation"}.md`;
  exp.onclick = (e) => { e.preventDefault(); download(href, exp.download, title); }; // with the key header
  exp.setAttribute("aria-label", `Export “${title}” as Markdown`);
  exp.title = "Export as Markdown";
  bar.append(
    smallButton("Rename", `Rename “${title}”`, () => startRename(li, row, title)),
    exp,
    smallButton("Delete", `Delete “${title}”`, () => confirmDelete(li, row, title), "danger"),
  );
  return bar;
}

function startRename(li, row, title) {
  const form = el("form", "conv-rename");
  const input = el("input");
  input.type = "text";
  input.value = row.title || "";
  input.maxLength = 80;
  input.setAttribute("aria-label", "New name (empty: the first message)");
  const save = el("button", "small", "Save");
  save.type = "submit";
  const cancel = smallButton("Cancel", "Cancel renaming", () => render(true), "secondary");
  form.append(input, save, cancel);
  form.onsubmit = async (e) => {
    e.preventDefault();
    try {
      await api("PATCH", `/sessions/${encodeURIComponent(row.session_id)}`, { title: input.value });
    } catch (err) {
      localError("rename_failed", `Could not rename “${title}”: ${err.message}`);
      return;
    }
    await refresh(true);
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Escape") { e.stopPropagation(); render(true); }
  });
  li.replaceChildren(form);
  input.focus();
  input.select();
}

function confirmDelete(li, row, title) {
  const box = el("div", "conv-confirm");
  box.setAttribute("role", "alertdialog");
  box.setAttribute("aria-label", "Confirm deletion");
  const yes = smallButton("Delete", `Yes, delete “${title}”`, () => remove(row, title), "danger confirm");
  const no = smallButton("Keep", "Keep it", () => render(true), "secondary");
  box.append(el("p", "", `Delete “${title}”? This cannot be undone.`), yes, no);
  li.replaceChildren(box);
  no.focus();
}

async function download(href, name, title) {
  try {
    const res = await fetch(href, { headers: authHeaders(), cache: "no-store" });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const url = URL.createObjectURL(await res.blob());
    const a = el("a");
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) {
    localError("export_failed", `Could not export “${title}”: ${err.message}`);
  }
}

async function remove(row, title) {
  // Leave it first: an open connection saves its session when it closes, which would bring it back.
  if (row.session_id === list.current) await list.open(null);
  try {
    await api("DELETE", `/sessions/${encodeURIComponent(row.session_id)}`);
  } catch (err) {
    localError("delete_failed", `Could not delete “${title}”: ${err.message}`);
    render(true);
    return;
  }
  forgetKey(row.session_id);
  notify(`Deleted “${title}”.`, "info");
  await refresh(true);
}
