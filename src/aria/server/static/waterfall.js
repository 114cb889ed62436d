// A turn's latency waterfall, drawn with divs: one row per stage up to the first audio, a bar from the
// origin (speech end, or the first mark of a typed turn) to the stage, its own step since the previous stage
// in a darker shade, all on one scale. Playback (first audio out to the answer's end) is another kind of
// time, seconds long: it is shown apart, after a gap marker, hatched, on its own scale.

const STAGES = [
  ["speech_end", "Speech end"],
  ["final_transcript", "Final transcript"],
  ["end_of_turn", "End of turn"],
  ["llm_request", "LLM request"],
  ["first_token", "First token"],
  ["first_tts_request", "First TTS request"],
  ["first_audio_out", "First audio out"],
];

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function formatMs(ms) {
  if (ms >= 10000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 100) return `${Math.round(ms)} ms`;
  return `${ms.toFixed(ms >= 10 ? 0 : 1)} ms`;
}

/** A <figure> for one `metrics` message: `waterfall` maps stage -> ms since the origin, or null. */
export function renderWaterfall(turnId, waterfall, { label } = {}) {
  const marked = STAGES.filter(([key]) => typeof waterfall?.[key] === "number");
  const figure = el("figure", "waterfall");
  figure.dataset.turnId = turnId;
  const fromSpeech = typeof waterfall?.speech_end === "number";
  const caption = el("figcaption");
  caption.append(el("strong", "", label || "Turn"), ` · from ${fromSpeech ? "end of speech" : "request"}`);
  const audio = waterfall?.first_audio_out;
  if (typeof audio === "number") caption.append(" · ", el("span", "wf-total", `first audio ${formatMs(audio)}`));
  figure.append(caption);
  if (marked.length === 0) {
    figure.append(el("p", "muted", "No timings for this turn."));
    return figure;
  }
  const span = Math.max(1, ...marked.map(([key]) => waterfall[key]));
  const list = el("ol", "wf-rows");
  let prev = 0;
  for (const [key, name] of marked) {
    const ms = waterfall[key];
    const row = el("li", "wf-row");
    row.dataset.stage = key;
    const track = el("div", "wf-track");
    track.setAttribute("aria-hidden", "true");
    const bar = el("div", "wf-bar");
    bar.style.width = `${(ms / span) * 100}%`;
    const step = el("div", "wf-step");
    step.style.left = `${(prev / span) * 100}%`;
    step.style.width = `${(Math.max(0, ms - prev) / span) * 100}%`;
    track.append(bar, step);
    const value = el("span", "wf-ms", formatMs(ms));
    if (ms > prev && prev > 0) value.title = `+${formatMs(ms - prev)} after the previous stage`;
    row.append(el("span", "wf-label", name), track, value);
    row.setAttribute("aria-label", `${name}: ${formatMs(ms)}`);
    list.append(row);
    prev = Math.max(prev, ms);
  }
  figure.append(list);
  const done = waterfall?.done;
  if (typeof done === "number") figure.append(playback(done, typeof audio === "number" ? audio : null));
  return figure;
}

/** The answer's playback, apart from the stages: a gap marker, then a hatched bar on its own scale. */
function playback(done, audio) {
  const part = el("div", "wf-playback");
  const gap = el("div", "wf-gap");
  gap.setAttribute("aria-hidden", "true");
  gap.append(el("span", "wf-gap-mark", "≈"), el("span", "wf-gap-text", "playback, not to scale"));
  const row = el("div", "wf-row wf-play");
  row.dataset.stage = "playback";
  const track = el("div", "wf-track");
  track.setAttribute("aria-hidden", "true");
  const bar = el("div", "wf-play-bar");
  track.append(bar);
  const length = audio === null ? done : Math.max(0, done - audio);
  const words = audio === null ? "Answer done" : "Playback";
  row.append(el("span", "wf-label", words), track, el("span", "wf-ms", formatMs(length)));
  row.setAttribute("aria-label", audio === null ? `Answer done after ${formatMs(done)}`
    : `Playback: ${formatMs(length)}, done ${formatMs(done)} after the start`);
  row.title = `done ${formatMs(done)} after the start`;
  part.append(gap, row);
  return part;
}
