// The wire protocol v1 (`/ws`, docs/protocol.md) as the page sees it: the binary frame tags and the JSON
// messages' shapes. The typedefs below are generated from the pydantic models (src/aria/server/messages.py)
// and checked against them by tests/server/test_protocol_js.py; edit the models, not this block.
//
// A binary frame is one tag byte, then the payload: TAG_AUDIO + PCM s16le mono (answer audio from the
// server at `session.audio_out.sample_rate`, microphone audio to it at `session.audio_in.sample_rate`),
// TAG_VIDEO + one JPEG camera frame (to the server).

export const PROTOCOL_VERSION = 1;
export const TAG_AUDIO = 0x01;
export const TAG_VIDEO = 0x02;

/** A binary frame: `tag`, then the bytes of `payload` (an ArrayBuffer or a typed array). */
export function frame(tag, payload) {
  const bytes = payload instanceof ArrayBuffer
    ? new Uint8Array(payload)
    : new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  const out = new Uint8Array(bytes.byteLength + 1);
  out[0] = tag;
  out.set(bytes, 1);
  return out;
}

// --- generated from src/aria/server/messages.py (tests/server/test_protocol_js.py) ---

/**
 * Always the first message on a connection.
 * @typedef {Object} SessionMessage
 * @property {"session"} type
 * @property {string} session_id
 * @property {1} protocol
 * @property {boolean} resumed
 * @property {string} mode
 * @property {Array<string>} modes
 * @property {AudioFormat} audio_in
 * @property {AudioFormat} audio_out
 * @property {VideoFormat} video_in
 * @property {Limits} limits
 * @property {Object<string, EngineStatus>} engines
 * @property {Array<ModeInfo>} mode_details
 * @property {boolean} private
 * @property {(string|null)} key
 */

/**
 * @typedef {Object} AudioFormat
 * @property {"pcm_s16le"} encoding
 * @property {number} sample_rate
 * @property {1} channels
 * @property {1} tag
 */

/**
 * @typedef {Object} VideoFormat
 * @property {"jpeg"} encoding
 * @property {2} tag
 * @property {number} max_fps
 */

/**
 * Size limits of one server, sent in ``session.limits``.
 * @typedef {Object} Limits
 * @property {number} max_audio_frame_bytes
 * @property {number} max_image_bytes
 * @property {number} max_text_chars
 * @property {number} max_message_bytes
 */

/**
 * @typedef {Object} EngineStatus
 * @property {(string|null)} name
 * @property {"loading"|"ready"|"unavailable"} state
 * @property {string} detail
 */

/**
 * One mode a client may switch to: what it takes in and what it gives back.
 * @typedef {Object} ModeInfo
 * @property {string} name
 * @property {string} label
 * @property {string} description
 * @property {Array<"audio"|"text"|"image"|"video">} inputs
 * @property {Array<"transcript"|"text"|"audio"|"notification"|"tool_result"|"control_signal">} outputs
 * @property {boolean} watches
 * @property {boolean} available
 * @property {string} reason
 */

/**
 * @typedef {Object} TranscriptMessage
 * @property {"transcript"} type
 * @property {string} turn_id
 * @property {string} text
 * @property {boolean} final
 * @property {(number|null)} confidence
 * @property {(string|null)} language
 */

/**
 * @typedef {Object} TextTokenMessage
 * @property {"text_token"} type
 * @property {string} turn_id
 * @property {string} text
 */

/**
 * @typedef {Object} ResponseDoneMessage
 * @property {"response_done"} type
 * @property {string} turn_id
 * @property {string} text
 * @property {boolean} interrupted
 * @property {(string|null)} error
 * @property {number} audio_ms
 */

/**
 * Hold or go on with the answer's playback: speech started over it and may be a backchannel.
 * @typedef {Object} PlaybackControlMessage
 * @property {"playback_control"} type
 * @property {string} turn_id
 * @property {"pause"|"resume"} command
 */

/**
 * @typedef {Object} StateMessage
 * @property {"state"} type
 * @property {"idle"|"listening"|"processing"|"responding"} state
 * @property {string} reason
 * @property {(string|null)} turn_id
 * @property {Array<string>} loading
 */

/**
 * @typedef {Object} MetricsMessage
 * @property {"metrics"} type
 * @property {string} turn_id
 * @property {Object<string, (number|null)>} waterfall
 * @property {Object<string, *>} extra
 */

/**
 * @typedef {Object} NotificationMessage
 * @property {"notification"} type
 * @property {string} text
 * @property {"info"|"warning"} level
 * @property {Object<string, *>} data
 */

/**
 * @typedef {Object} ControlSignalMessage
 * @property {"control_signal"} type
 * @property {string} id
 * @property {string} signal
 * @property {Object<string, *>} payload
 */

/**
 * @typedef {Object} ToolResultMessage
 * @property {"tool_result"} type
 * @property {string} id
 * @property {string} tool
 * @property {*} result
 * @property {boolean} ok
 */

/**
 * @typedef {Object} ErrorMessage
 * @property {"error"} type
 * @property {string} code
 * @property {string} message
 * @property {boolean} retryable
 * @property {(string|null)} turn_id
 */

/**
 * @typedef {Object} PongMessage
 * @property {"pong"} type
 * @property {(string|null)} id
 */

/**
 * A resumed session's conversation so far, sent right after ``session`` when ``resumed``.
 * @typedef {Object} HistoryMessage
 * @property {"history"} type
 * @property {string} session_id
 * @property {Array<HistoryEntry>} messages
 */

/**
 * @typedef {Object} HistoryEntry
 * @property {"user"|"assistant"|"system"|"tool"} role
 * @property {string} content
 * @property {"text"|"audio"|"image"} modality
 * @property {boolean} interrupted
 * @property {(string|null)} mode
 * @property {number} timestamp
 * @property {(string|null)} generated
 */

/**
 * The mode now in effect: after a ``switch_mode`` (once its engines are loaded) or a ``set_watch``.
 * @typedef {Object} ModeMessage
 * @property {"mode"} type
 * @property {string} mode
 * @property {(string|null)} watch
 * @property {Object<string, string>} engines
 */

/**
 * @typedef {Object} TextMessage
 * @property {"text"} type
 * @property {string} text
 */

/**
 * An image with an optional question. :attr:`image` holds the decoded bytes.
 * @typedef {Object} ImageMessage
 * @property {"image"} type
 * @property {string} data
 * @property {"jpeg"|"png"} format
 * @property {(string|null)} [text]
 */

/**
 * @typedef {Object} InterruptControl
 * @property {"control"} type
 * @property {"interrupt"} action
 */

/**
 * @typedef {Object} SwitchModeControl
 * @property {"control"} type
 * @property {"switch_mode"} action
 * @property {string} mode
 * @property {(string|null)} [watch]
 */

/**
 * Set (or, with an empty string, clear) the condition the active monitor watches for.
 * @typedef {Object} SetWatchControl
 * @property {"control"} type
 * @property {"set_watch"} action
 * @property {string} watch
 */

/**
 * @typedef {Object} ConfirmActionControl
 * @property {"control"} type
 * @property {"confirm_action"} action
 * @property {string} id
 * @property {boolean} accept
 */

/**
 * @typedef {Object} UpdateConfigControl
 * @property {"control"} type
 * @property {"update_config"} action
 * @property {Object<string, *>} config
 */

/**
 * @typedef {Object} StartControl
 * @property {"control"} type
 * @property {"start"} action
 */

/**
 * @typedef {Object} PlaybackMessage
 * @property {"playback"} type
 * @property {string} turn_id
 * @property {number} played_ms
 */

/**
 * @typedef {Object} PingMessage
 * @property {"ping"} type
 * @property {(string|null)} [id]
 */

/** @typedef {SessionMessage | TranscriptMessage | TextTokenMessage | ResponseDoneMessage | PlaybackControlMessage | StateMessage | MetricsMessage | NotificationMessage | ControlSignalMessage | ToolResultMessage | ErrorMessage | PongMessage | HistoryMessage | ModeMessage} ServerMessage */

/** @typedef {TextMessage | ImageMessage | InterruptControl | SwitchModeControl | SetWatchControl | ConfirmActionControl | UpdateConfigControl | StartControl | PlaybackMessage | PingMessage} ClientMessage */

// --- end of generated ---
