// The page's shared state, and the hooks the browser tests read (`window.ariaTest`, documented in
// tests/browser/README.md). Values that live elsewhere (the player's clock, the AudioContext) are added as
// getters by app.js.

export const app = {
  session: null, // the current `session` message (null while disconnected)
  serverState: "idle",
  stateTurn: null,
  loading: [], // engine kinds the last `state` message said are loading
  loadingReason: "",
  mode: null, // the mode in effect: from `session`, then from each `mode` message
  pendingMode: null, // asked for with switch_mode, not yet confirmed by a `mode` message
  watch: null, // the condition a watching mode looks for (from `mode` messages)
  modeEngines: {}, // the `mode` message's engines, by kind
  modeDetails: [], // the last session's `mode_details` (kept while reconnecting)
  limits: {
    max_audio_frame_bytes: 32000,
    max_image_bytes: 2 * 1024 * 1024,
    max_text_chars: 4000,
    max_message_bytes: 4 * 1024 * 1024,
  },
};

export const test = {
  audioFramesReceived: 0,
  transcripts: [], // every transcript message, partial and final
  finalTranscripts: [], // the text of each final transcript
  tokens: "", // every text_token's text, concatenated
  responses: [], // response_done messages
  errors: [], // error messages from the server, and the page's own ({code, message, local: true})
  states: [], // the `state` of each state message, in order
  metrics: [], // metrics messages
  connection: "connecting",
  get session() { return app.session; },
  audioFramesSent: 0,
  videoFramesSent: 0,
  playbackReports: [], // {turn_id, played_ms, final} as sent
  playbackControls: [], // playback_control messages: speech over the answer paused (ducked) or resumed it
  sent: [], // every JSON message sent
  notifications: [],
  received: [], // the last 300 JSON messages from the server, as {at: ms since page load, ...message}
  interrupts: 0, // playback stopped here (barge-in, the Stop button, new text)
  // modes
  get mode() { return app.mode; }, // the mode in effect (the server's word: session, then `mode` messages)
  get pendingMode() { return app.pendingMode; }, // switch_mode sent, no `mode` message yet
  get watch() { return app.watch; }, // the watch condition in effect, or null
  get loading() { return app.loading; }, // what the last `state` message said is loading
  get breakers() { return app.breakers || {}; }, // GET /health breakers, polled every 10 s
  modeMessages: [], // `mode` messages
  alerts: [], // monitor alerts (notification data with kind "monitor"), oldest first
  alertFlashes: 0, // times an alert flashed the status area
  announcements: [], // what was read out through the aria-live announcer
  dictation: [], // the dictation document's paragraphs (final transcripts in a dictation mode)
  copied: null, // the text the Copy button last put on the clipboard
  micAvailable: true, // false in a mode without audio input
  limited: [], // GET /health's `limited`: engines of limited quality that serve now
  bannerShown: false, // the limited-setup banner is shown (not dismissed)
};
window.ariaTest = test;
