// The first-run pull on the page: one progress bar per file from `GET /health`'s `downloads`, polled every
// second while a file is waiting or downloading; a file that is done disappears, a failed one says why and
// how to retry (the panel can then be dismissed), and the panel goes away when nothing is left to show.

import { el, ui } from "./dom.js";
import { emit } from "./events.js";

const FAST_MS = 1000;
let again = null;
let dismissed = null; // the failures the person closed the panel on

function mb(bytes) {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GB` : `${(bytes / 2 ** 20).toFixed(1)} MB`;
}

/** Show `downloads` ([{name, file, done, total, state, error}]); while some are under way, call `refresh`
 * (the /health poll) again in a second. */
export function showDownloads(downloads, refresh) {
  emit("downloads", downloads);
  const shown = downloads.filter((d) => d.state !== "done");
  const rows = shown.map((d) => {
    const li = el("li", `download ${d.state}`);
    li.dataset.file = d.file;
    const name = d.file.split("/").pop();
    const head = el("div", "download-head");
    head.append(el("strong", "", d.name), el("span", "download-file", name));
    const bar = document.createElement("progress");
    bar.max = d.total || 1;
    if (d.total) bar.value = Math.min(d.done, d.total);
    else if (d.state !== "downloading") bar.value = 0; // no size known: an indeterminate bar while it runs
    bar.setAttribute("aria-label", `${d.name}: ${name}`);
    let words;
    if (d.state === "failed") words = `failed: ${d.error || "unknown error"}. Retry with: aria models pull ${d.name}`;
    else if (d.state === "waiting") words = d.total ? `waiting · ${mb(d.total)}` : "waiting";
    else words = d.total ? `${mb(d.done)} of ${mb(d.total)} · ${Math.floor((100 * d.done) / d.total)}%` : mb(d.done);
    if (d.state === "failed") li.append(head, el("span", "download-words", words));
    else li.append(head, bar, el("span", "download-words", words));
    return li;
  });
  ui.downloadList.replaceChildren(...rows);
  const active = shown.filter((d) => d.state === "waiting" || d.state === "downloading");
  // Dismissed failures stay hidden until another file fails or a download starts again.
  const key = shown.map((d) => `${d.file}:${d.state}`).join(",");
  ui.downloads.hidden = rows.length === 0 || (!active.length && key === dismissed);
  ui.downloadsClose.hidden = active.length > 0;
  ui.downloadsClose.onclick = () => { dismissed = key; ui.downloads.hidden = true; };
  ui.downloadsTitle.textContent = active.length
    ? `Downloading models (${active.length} file${active.length === 1 ? "" : "s"} to go): the assistant answers with what it has meanwhile`
    : "Some model files could not be downloaded";
  clearTimeout(again);
  again = active.length ? setTimeout(refresh, FAST_MS) : null;
}
