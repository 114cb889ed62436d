// What the person sends besides typed text: the microphone (with its level meter), an uploaded image,
// and camera frames.

import { MicCapture, resumeAudio } from "./audio.js";
import { showUserImage } from "./chat.js";
import { buffered, isOpen, send, sendBinary } from "./connection.js";
import { localError, ui } from "./dom.js";
import { emit } from "./events.js";
import { TAG_AUDIO, TAG_VIDEO } from "./protocol.js";
import { app } from "./state.js";


const deps = { ctx: null, stopPlayback: () => {}, onCameraChange: () => {} };
const meter = { rms: 0, peak: 0, shown: 0 };
let mic = null;

/** `ctx`: the AudioContext; `raw`: no browser DSP on the microphone; `stopPlayback()`: silence the answer
 * (an image interrupts it); `onCameraChange(on)`: the camera went on or off. */
export function initMedia({ ctx, raw, stopPlayback, onCameraChange }) {
  Object.assign(deps, { ctx, stopPlayback, onCameraChange });
  mic = new MicCapture(ctx, {
    raw,
    onFrame: sendAudioFrame,
    onLevel: (rms, peak) => { meter.rms = rms; meter.peak = Math.max(meter.peak, peak); },
  });
  requestAnimationFrame(drawMeter);
}

// -- microphone --------------------------------------------------------------------------------------------

export function micActive() {
  return mic.active;
}

/** The session's input rate (16 kHz unless the server says otherwise). */
export function setMicRate(rate) {
  mic.targetRate = rate || 16000;
}

function sendAudioFrame(pcm) {
  if (pcm.byteLength === 0 || pcm.byteLength > app.limits.max_audio_frame_bytes) return;
  if (sendBinary(TAG_AUDIO, pcm)) emit("audio-frame-sent");
}

export async function toggleMic() {
  resumeAudio(deps.ctx);
  if (mic.active) {
    mic.stop();
    setMicUi(false);
    return;
  }
  ui.mic.disabled = true;
  try {
    await mic.start();
    setMicUi(true);
    send({ type: "control", action: "start" });
  } catch (err) {
    const words = {
      NotAllowedError: "The microphone is blocked. Allow it in the browser's site settings to talk.",
      NotFoundError: "No microphone was found.",
      NotReadableError: "The microphone is in use by another program.",
      InsecureContextError: "The microphone needs a secure page: open Aria over https or on localhost.",
    }[err.name] || `The microphone could not start: ${err.message}`;
    localError("mic_failed", words);
  } finally {
    ui.mic.disabled = !app.micAvailable;
  }
}

/** A mode without audio input hides the microphone (and stops it when it is on). */
export function setMicAvailable(available) {
  app.micAvailable = available;
  if (!available && mic.active) {
    mic.stop();
    setMicUi(false);
  }
  ui.mic.disabled = !available;
  ui.mic.hidden = !available;
  ui.level.hidden = !available;
}

function setMicUi(on) {
  ui.mic.setAttribute("aria-pressed", String(on));
  ui.mic.setAttribute("aria-label", on ? "Stop microphone" : "Start microphone");
  ui.mic.classList.toggle("on", on);
}

function drawMeter() {
  const c = ui.level;
  const width = Math.round(c.clientWidth * devicePixelRatio);
  const height = Math.round(c.clientHeight * devicePixelRatio);
  if (width > 0 && (c.width !== width || c.height !== height)) Object.assign(c, { width, height });
  const g = c.getContext("2d");
  const db = meter.rms > 0 ? 20 * Math.log10(meter.rms) : -100;
  const target = Math.max(0, Math.min(1, (db + 60) / 60));
  meter.shown = target > meter.shown ? target : meter.shown * 0.9 + target * 0.1;
  const peak = Math.max(0, Math.min(1, (20 * Math.log10(Math.max(meter.peak, 1e-5)) + 60) / 60));
  meter.peak *= 0.95;
  const style = getComputedStyle(c);
  g.clearRect(0, 0, c.width, c.height);
  g.fillStyle = style.getPropertyValue("--meter-bg") || "#8884";
  g.fillRect(0, 0, c.width, c.height);
  g.fillStyle = mic.active ? style.getPropertyValue("--meter-fg") || "#2a7" : "#8888";
  g.fillRect(0, 0, Math.round(meter.shown * c.width), c.height);
  if (mic.active) g.fillRect(Math.round(peak * (c.width - 2)), 0, 2, c.height);
  requestAnimationFrame(drawMeter);
}

// -- image upload ------------------------------------------------------------------------------------------

function readAsBase64(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

/** The image as a JPEG/PNG blob within `maxBytes`: as is when it already is, else re-encoded smaller. */
async function fitImage(file, maxBytes) {
  if ((file.type === "image/jpeg" || file.type === "image/png") && file.size <= maxBytes) return file;
  const bitmap = await createImageBitmap(file);
  let scale = Math.min(1, 1600 / Math.max(bitmap.width, bitmap.height));
  for (let attempt = 0; attempt < 5; attempt++, scale *= 0.7) {
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((r) => canvas.toBlob(r, "image/jpeg", 0.85));
    if (blob && blob.size <= maxBytes) return blob;
  }
  throw new Error("image too large");
}

/** The file picked in the image input, sent as an `image` message with the text box as its question. */
export async function sendImage() {
  const file = ui.image.files?.[0];
  ui.image.value = "";
  if (!file) return;
  resumeAudio(deps.ctx);
  if (!isOpen()) {
    localError("not_connected", "Not connected, so the image was not sent.");
    return;
  }
  // The JSON message carries base64 (4/3 of the bytes): keep it under the message limit too.
  const { max_image_bytes: maxImage, max_message_bytes: maxMessage } = app.limits;
  const maxBytes = Math.min(maxImage, Math.floor(((maxMessage - 4096) * 3) / 4));
  let blob;
  try {
    blob = await fitImage(file, maxBytes);
  } catch {
    localError("bad_image", "That image could not be used. Try a smaller JPEG or PNG picture.");
    return;
  }
  const question = ui.text.value.trim() || null;
  const format = blob.type === "image/png" ? "png" : "jpeg";
  deps.stopPlayback();
  if (!send({ type: "image", data: await readAsBase64(blob), format, text: question })) return;
  ui.text.value = "";
  showUserImage(blob, question);
}

// -- camera --------------------------------------------------------------------------------------------------

const camera = { stream: null, timer: null, busy: false, canvas: document.createElement("canvas") };

export function cameraOn() {
  return camera.stream !== null;
}

export async function toggleCamera() {
  if (camera.stream) {
    stopCamera();
    return;
  }
  try {
    const video = { width: { ideal: 640 }, height: { ideal: 480 } };
    camera.stream = await navigator.mediaDevices.getUserMedia({ video });
  } catch (err) {
    localError("camera_failed", err.name === "NotAllowedError"
      ? "The camera is blocked. Allow it in the browser's site settings."
      : `The camera could not start: ${err.message}`);
    return;
  }
  ui.preview.srcObject = camera.stream;
  ui.preview.play().catch(() => {});
  ui.cameraPanel.hidden = false;
  ui.camera.setAttribute("aria-pressed", "true");
  ui.camera.setAttribute("aria-label", "Turn camera off");
  const fps = Math.min(1, app.session?.video_in?.max_fps || 1);
  camera.timer = setInterval(sendCameraFrame, Math.round(1000 / fps));
  deps.onCameraChange(true);
}

function stopCamera() {
  clearInterval(camera.timer);
  camera.stream?.getTracks().forEach((t) => t.stop());
  camera.stream = null;
  ui.preview.srcObject = null;
  ui.cameraPanel.hidden = true;
  ui.camera.setAttribute("aria-pressed", "false");
  ui.camera.setAttribute("aria-label", "Turn camera on");
  deps.onCameraChange(false);
}

async function sendCameraFrame() {
  const v = ui.preview;
  if (camera.busy || !isOpen() || v.readyState < 2 || !v.videoWidth) return;
  if (buffered() > 512 * 1024) return; // the link is slow: skip a frame rather than queue it
  camera.busy = true;
  try {
    const scale = Math.min(1, 640 / v.videoWidth);
    const c = camera.canvas;
    c.width = Math.round(v.videoWidth * scale);
    c.height = Math.round(v.videoHeight * scale);
    c.getContext("2d").drawImage(v, 0, 0, c.width, c.height);
    const blob = await new Promise((r) => c.toBlob(r, "image/jpeg", 0.7));
    if (blob && blob.size <= app.limits.max_image_bytes && sendBinary(TAG_VIDEO, await blob.arrayBuffer())) {
      emit("video-frame-sent");
    }
  } finally {
    camera.busy = false;
  }
}
