// Web Audio for the page: one AudioContext, microphone capture through an AudioWorklet, and the answer's
// playback through a small jitter buffer that knows how much of each turn was actually heard.

const REPORT_EVERY_MS = 250;
const TICK_MS = 50;

export function createAudioContext() {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  return new Ctx({ latencyHint: "interactive" });
}

/** Resume a suspended context. Only works from a user gesture (or with an autoplay policy that allows it);
 * never awaited on its own: without a gesture the promise may never settle. */
export function resumeAudio(ctx) {
  if (ctx.state !== "running") ctx.resume().catch(() => {});
}

const loadedWorklets = new WeakMap();

function loadWorklet(ctx, file) {
  let loaded = loadedWorklets.get(ctx);
  if (!loaded) loadedWorklets.set(ctx, (loaded = new Map()));
  if (!loaded.has(file)) loaded.set(file, ctx.audioWorklet.addModule(new URL(file, import.meta.url)));
  return loaded.get(file);
}

/** The microphone as 20 ms frames of 16-bit PCM at `targetRate`, plus a level per frame. */
export class MicCapture {
  constructor(ctx, { targetRate = 16000, raw = false, onFrame = () => {}, onLevel = () => {} } = {}) {
    this.ctx = ctx;
    this.targetRate = targetRate;
    this.raw = raw;
    this.onFrame = onFrame;
    this.onLevel = onLevel;
    this.stream = null;
    this.source = null;
    this.node = null;
    this.sink = null;
  }

  get active() {
    return this.stream !== null;
  }

  async start() {
    if (this.active) return;
    if (!navigator.mediaDevices?.getUserMedia || !this.ctx.audioWorklet) {
      const err = new Error("microphone capture needs a secure page (https or localhost)");
      err.name = "InsecureContextError";
      throw err;
    }
    const dsp = !this.raw;
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: dsp, noiseSuppression: dsp, autoGainControl: dsp, channelCount: 1 },
    });
    try {
      await loadWorklet(this.ctx, "./mic-worklet.js");
    } catch (err) {
      stream.getTracks().forEach((t) => t.stop());
      throw err;
    }
    this.stream = stream;
    this.source = this.ctx.createMediaStreamSource(stream);
    this.node = new AudioWorkletNode(this.ctx, "aria-mic", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { targetRate: this.targetRate },
    });
    this.node.port.onmessage = ({ data }) => {
      this.onLevel(data.rms, data.peak);
      this.onFrame(data.pcm);
    };
    // A muted path to the destination keeps the worklet pulled by the graph.
    this.sink = this.ctx.createGain();
    this.sink.gain.value = 0;
    this.source.connect(this.node).connect(this.sink).connect(this.ctx.destination);
  }

  stop() {
    if (!this.active) return;
    this.node.port.postMessage("stop");
    this.node.port.onmessage = null;
    for (const n of [this.source, this.node, this.sink]) n.disconnect();
    this.stream.getTracks().forEach((t) => t.stop());
    this.stream = this.source = this.node = this.sink = null;
    this.onLevel(0, 0);
  }
}

/**
 * Answer audio: s16le blocks scheduled back to back as AudioBufferSourceNodes after a short initial
 * buffer (`prebufferMs`, again after running dry). Counts per turn how much was actually played, from
 * the context's output clock, and reports it through `onReport(turnId, playedMs, final)`: every 250 ms
 * while it plays, once more when the turn's audio has all played, and at once on `stop()`.
 */
export class Player {
  constructor(ctx, { prebufferMs = 80, onReport = () => {}, onChange = () => {} } = {}) {
    this.ctx = ctx;
    this.prebufferMs = prebufferMs;
    this.onReport = onReport;
    this.onChange = onChange;
    this.rate = 24000;
    this.out = ctx.createGain();
    this.out.connect(ctx.destination);
    this.turnId = null; // the turn that incoming audio belongs to
    this.discarded = new Set(); // turns stopped here: their late audio is dropped
    this.turns = new Map(); // turnId -> {playedFrames, reportedMs, lastReportAt, done, final}
    this.pending = []; // blocks received but not scheduled yet: {turn, data}
    this.pendingFrames = 0;
    this.nodes = []; // scheduled: {src, start, end, turn, frames}
    this.primed = false;
    this.primeTimer = null;
    this.nextTime = 0;
    this.lastNow = 0;
    this.finishedFrames = 0;
    this.samplesPlayed = 0; // answer samples (at `rate`) actually played, all turns
    this.underruns = 0; // times a turn's audio ran dry before its end and had to buffer again
    this.lastTurn = null;
    this.playing = false;
    this.ticker = setInterval(() => this.tick(), TICK_MS);
  }

  setSampleRate(rate) {
    if (rate > 0) this.rate = rate;
  }

  /** The turn that audio arriving from now on belongs to. */
  setTurn(turnId) {
    if (turnId && turnId !== this.turnId) this.turnId = turnId;
  }

  /** One block of s16le mono; returns false when it was dropped (no turn yet, or a stopped turn). */
  push(bytes) {
    const turn = this.turnId;
    const frames = bytes.byteLength >> 1;
    if (turn === null || this.discarded.has(turn) || frames === 0) return false;
    const view = new DataView(bytes.buffer, bytes.byteOffset, frames * 2);
    const data = new Float32Array(frames);
    for (let i = 0; i < frames; i++) data[i] = view.getInt16(i * 2, true) / 32768;
    const info = this.turn(turn);
    if (this.primed && this.nodes.length === 0 && this.nextTime < this.ctx.currentTime) {
      this.primed = false; // ran dry: buffer again
      if (turn === this.lastTurn && !info.done) this.underruns += 1;
    }
    this.lastTurn = turn;
    this.pending.push({ turn, data });
    this.pendingFrames += frames;
    if (this.primed || this.pendingFrames >= (this.rate * this.prebufferMs) / 1000) this.flush();
    else if (this.primeTimer === null) this.primeTimer = setTimeout(() => this.flush(), this.prebufferMs + 40);
    this.update();
    return true;
  }

  /** The turn's answer is complete (`response_done`): play what is buffered without waiting. */
  endTurn(turnId) {
    const info = this.turns.get(turnId);
    if (!info) return;
    info.done = true;
    if (this.pending.length) this.flush();
    this.tick();
  }

  /** Speech started over the answer (`playback_control`): duck it while the server holds the rest;
   * back to full level on resume. */
  duck(on) {
    this.ducked = on;
    this.out.gain.setTargetAtTime(on ? 0.12 : 1, this.ctx.currentTime, 0.03);
    this.update();
  }

  /** Barge-in: silence now. Sends the final report of each turn cut short; returns them. */
  stop() {
    const now = this.now();
    const reports = [];
    for (const n of this.nodes) {
      n.src.onended = null;
      try {
        n.src.stop();
      } catch {
        /* never started */
      }
      n.src.disconnect();
      this.credit(n, Math.max(0, Math.min(1, (now - n.start) / (n.end - n.start))) * n.frames);
    }
    const cut = new Set([...this.nodes, ...this.pending].map((n) => n.turn));
    if (this.turnId) cut.add(this.turnId);
    this.nodes = [];
    this.pending = [];
    this.pendingFrames = 0;
    this.primed = false;
    clearTimeout(this.primeTimer);
    this.primeTimer = null;
    for (const turn of cut) {
      this.discarded.add(turn);
      const info = this.turns.get(turn);
      if (info && !info.final) reports.push(this.report(turn, true));
    }
    this.samplesPlayed = Math.round(this.finishedFrames);
    if (this.ducked) this.duck(false); // the next answer plays at full level
    this.update();
    return reports;
  }

  playedMs(turnId) {
    const info = this.turns.get(turnId);
    if (!info) return 0;
    const now = this.now();
    let frames = info.playedFrames;
    for (const n of this.nodes) if (n.turn === turnId) frames += this.partial(n, now);
    return (frames * 1000) / this.rate;
  }

  close() {
    this.stop();
    clearInterval(this.ticker);
  }

  // -- internals ---------------------------------------------------------------------------------

  turn(turnId) {
    let info = this.turns.get(turnId);
    if (!info) {
      info = { playedFrames: 0, reportedMs: -1, lastReportAt: 0, done: false, final: false };
      this.turns.set(turnId, info);
    }
    return info;
  }

  /** The context time of the sample now leaving the speakers (monotonic). */
  now() {
    const ts = this.ctx.getOutputTimestamp?.();
    const t = ts && ts.contextTime > 0 ? ts.contextTime : this.ctx.currentTime;
    this.lastNow = Math.max(this.lastNow, t);
    return this.lastNow;
  }

  partial(node, now) {
    return Math.max(0, Math.min(1, (now - node.start) / (node.end - node.start))) * node.frames;
  }

  credit(node, frames) {
    this.turn(node.turn).playedFrames += frames;
    this.finishedFrames += frames;
  }

  flush() {
    clearTimeout(this.primeTimer);
    this.primeTimer = null;
    const now = this.ctx.currentTime;
    if (!this.primed || this.nextTime < now + 0.005) this.nextTime = now + 0.02;
    this.primed = true;
    for (const { turn, data } of this.pending) {
      const buffer = this.ctx.createBuffer(1, data.length, this.rate);
      buffer.copyToChannel(data, 0);
      const src = this.ctx.createBufferSource();
      src.buffer = buffer;
      src.connect(this.out);
      const node = { src, start: this.nextTime, end: this.nextTime + buffer.duration, turn, frames: data.length };
      src.onended = () => this.tick();
      src.start(node.start);
      this.nextTime = node.end;
      this.nodes.push(node);
    }
    this.pending = [];
    this.pendingFrames = 0;
  }

  tick() {
    const now = this.now();
    const still = [];
    for (const n of this.nodes) {
      if (now >= n.end) {
        n.src.disconnect();
        this.credit(n, n.frames);
      } else still.push(n);
    }
    this.nodes = still;
    let partial = 0;
    for (const n of this.nodes) partial += this.partial(n, now);
    this.samplesPlayed = Math.round(this.finishedFrames + partial);

    const wall = performance.now();
    for (const [turn, info] of this.turns) {
      if (info.final) continue;
      const busy = this.nodes.some((n) => n.turn === turn) || this.pending.some((p) => p.turn === turn);
      if (info.done && !busy) this.report(turn, true);
      else if (busy && wall - info.lastReportAt >= REPORT_EVERY_MS) this.report(turn, false);
    }
    this.update();
  }

  report(turn, final) {
    const info = this.turn(turn);
    const ms = Math.round(this.playedMs(turn) * 10) / 10;
    info.lastReportAt = performance.now();
    if (final) info.final = true;
    if (ms !== info.reportedMs || final) {
      info.reportedMs = ms;
      this.onReport(turn, ms, final);
    }
    if (final && this.turns.size > 32) this.turns.delete(turn);
    return { turn_id: turn, played_ms: ms };
  }

  update() {
    const playing = this.nodes.length > 0 || this.pending.length > 0;
    if (playing !== this.playing) {
      this.playing = playing;
      this.onChange(playing);
    }
  }
}
