// The page's shared state. (The browser tests' hooks, `window.ariaTest`, are in testhooks.js, test-only.)

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
  micAvailable: true, // false in a mode without audio input
  limits: {
    max_audio_frame_bytes: 32000,
    max_image_bytes: 2 * 1024 * 1024,
    max_text_chars: 4000,
    max_message_bytes: 4 * 1024 * 1024,
  },
};
