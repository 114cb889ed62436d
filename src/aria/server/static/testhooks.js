// TEST-ONLY. `window.ariaTest` (the page) and `window.dashboardTest` (the dashboard): what the browser tests
// read and call (tests/browser/README.md). Loaded by app.js / dashboard.js only when asked for:
// `window.ariaTestHooks = true` set before the page's scripts (the tests' launcher does this) or
// `?testhooks=1` in the address. Nothing in the product reads them: they record the page's events
// (events.js) and expose the actions the page hands over. Imports no product module but the state.
//
// Events it listens to (detail):
//   message (every JSON message from the server)   audio-frame (an answer audio frame arrived)
//   sent (a JSON message sent)   audio-frame-sent / video-frame-sent   playback-report ({turn_id, played_ms, final})
//   connection ({state, words, code, parked})   interrupt (playback stopped here)   local-error ({code, message})
//   mode (a `mode` message applied)   alert ({alert_id, condition, description, at})   alert-flash
//   announce (text read out)   dictation (the paragraphs)   copied (text)   banner ({limited, shown})
//   conversations (rows)   downloads (rows)   models (GET /models/llm)   model-switch (name)   model-error (body)
//   voice-groups ([[language, voices]])
// The dashboard's: dashboard-poll, dashboard-rendered (the /metrics/json data), dashboard-error (words).

import { on } from "./events.js";
import { app } from "./state.js";

const RECEIVED_KEPT = 300;

/** Build `window.ariaTest` over the page's `player` and audio context, with its actions: `disconnect` (drop
 * the connection: the page reconnects and resumes), `openConversation(sessionId | null)` (a Promise of the
 * session id once started), `refreshHealth` (poll /health now), `checkModel` (poll the model now). */
export function install({ player, ctx, disconnect, openConversation, refreshHealth, checkModel }) {
  const test = {
    audioFramesReceived: 0,
    transcripts: [], // every transcript message, partial and final
    finalTranscripts: [], // the text of each final transcript
    tokens: "", // every text_token's text, concatenated
    responses: [], // response_done messages
    errors: [], // error messages from the server, and the page's own ({code, message, local: true})
    states: [], // the `state` of each state message, in order
    metrics: [], // metrics messages
    connection: "connecting",
    audioFramesSent: 0,
    videoFramesSent: 0,
    playbackReports: [], // {turn_id, played_ms, final} as sent
    playbackControls: [], // playback_control messages: speech over the answer paused (ducked) or resumed it
    sent: [], // every JSON message sent
    notifications: [],
    received: [], // the last 300 JSON messages from the server, as {at: ms since page load, ...message}
    interrupts: 0, // playback stopped here (barge-in, the Stop button, new text)
    modeMessages: [], // `mode` messages
    alerts: [], // monitor alerts (notification data with kind "monitor"), oldest first
    alertFlashes: 0, // times an alert flashed the status area
    announcements: [], // what was read out through the aria-live announcer
    dictation: [], // the dictation document's paragraphs (final transcripts in a dictation mode)
    copied: null, // the text a Copy button last put on the clipboard
    limited: [], // GET /health's `limited`: engines of limited quality that serve now
    bannerShown: false, // the limited-setup banner is shown (not dismissed)
    disconnect,
    openConversation,
    refreshHealth,
    checkModel,
    playedMs: (turnId) => player.playedMs(turnId), // how much of one answer has played, in ms
  };
  const getters = {
    session: () => app.session,
    mode: () => app.mode, // the mode in effect (the server's word: session, then `mode` messages)
    pendingMode: () => app.pendingMode, // switch_mode sent, no `mode` message yet
    watch: () => app.watch, // the watch condition in effect, or null
    loading: () => app.loading, // what the last `state` message said is loading
    breakers: () => app.breakers || {}, // GET /health breakers, polled every 10 s
    micAvailable: () => app.micAvailable, // false in a mode without audio input
    samplesPlayed: () => player.samplesPlayed,
    playing: () => player.playing,
    underruns: () => player.underruns,
    audioContextState: () => ctx.state,
  };
  for (const [name, get] of Object.entries(getters)) Object.defineProperty(test, name, { get, enumerable: true });

  const byType = {
    history: (msg) => { test.history = msg.messages; },
    transcript: (msg) => {
      test.transcripts.push(msg);
      if (msg.final) test.finalTranscripts.push(msg.text);
    },
    text_token: (msg) => { test.tokens += msg.text; },
    response_done: (msg) => test.responses.push(msg),
    state: (msg) => test.states.push(msg.state),
    metrics: (msg) => test.metrics.push(msg),
    notification: (msg) => test.notifications.push(msg),
    error: (msg) => test.errors.push(msg),
    playback_control: (msg) => test.playbackControls.push(msg),
  };
  on("message", (msg) => {
    test.received.push({ at: Math.round(performance.now()), ...msg });
    if (test.received.length > RECEIVED_KEPT) test.received.shift();
    byType[msg.type]?.(msg);
  });
  on("audio-frame", () => { test.audioFramesReceived += 1; });
  on("sent", (msg) => test.sent.push(msg));
  on("audio-frame-sent", () => { test.audioFramesSent += 1; });
  on("video-frame-sent", () => { test.videoFramesSent += 1; });
  on("playback-report", (report) => test.playbackReports.push(report));
  on("connection", ({ state }) => { test.connection = state; });
  on("interrupt", () => { test.interrupts += 1; });
  on("local-error", (error) => test.errors.push(error));
  on("mode", (msg) => test.modeMessages.push(msg));
  on("alert", (alert) => test.alerts.push(alert));
  on("alert-flash", () => { test.alertFlashes += 1; });
  on("announce", (text) => test.announcements.push(text));
  on("dictation", (paragraphs) => { test.dictation = [...paragraphs]; });
  on("copied", (text) => { test.copied = text; });
  on("banner", ({ limited, shown }) => {
    if (limited) test.limited = limited;
    test.bannerShown = shown;
  });
  on("conversations", (rows) => { test.conversations = rows.map((r) => ({ ...r })); });
  on("downloads", (rows) => { test.downloads = rows; });
  on("models", (data) => { test.models = data; });
  on("model-switch", () => { test.modelSwitches = (test.modelSwitches || 0) + 1; });
  on("model-error", (body) => { test.modelErrors = [...(test.modelErrors || []), body]; });
  on("voice-groups", (groups) => {
    test.voiceGroups = groups.map(([language, voices]) => ({ language, voices: voices.map((v) => ({ ...v })) }));
  });
  window.ariaTest = test;
  return test;
}

/** Build `window.dashboardTest`: polls made, renders done, errors shown, the last data drawn. */
export function installDashboard() {
  const test = { polls: 0, rendered: 0, errors: [], data: null };
  on("dashboard-poll", () => { test.polls += 1; });
  on("dashboard-rendered", (data) => {
    test.data = data;
    test.rendered += 1;
  });
  on("dashboard-error", (words) => test.errors.push(words));
  window.dashboardTest = test;
  return test;
}
