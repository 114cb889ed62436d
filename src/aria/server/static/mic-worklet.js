// Microphone capture on the audio thread: mono mix, low-pass, resample from the context's rate
// (`sampleRate`: 44100, 48000, ... never assumed) to the target rate, s16le, one message per 20 ms frame.
//
// Messages to the main thread: {pcm: ArrayBuffer (Int16 little-endian), rms: number, peak: number}.
// Message from the main thread: "stop" ends processing.

const FRAME_MS = 20;

// The Q of each section of an 8th-order Butterworth low-pass: flat below the cutoff, -35 dB at 1.67x it.
const BUTTERWORTH_8_Q = [0.5098, 0.6013, 0.9, 2.5629];

// RBJ biquad low-pass, direct form I.
class Biquad {
  constructor(cutoff, rate, q) {
    const w0 = (2 * Math.PI * cutoff) / rate;
    const alpha = Math.sin(w0) / (2 * q);
    const cos = Math.cos(w0);
    const a0 = 1 + alpha;
    this.b0 = (1 - cos) / 2 / a0;
    this.b1 = (1 - cos) / a0;
    this.b2 = this.b0;
    this.a1 = (-2 * cos) / a0;
    this.a2 = (1 - alpha) / a0;
    this.x1 = this.x2 = this.y1 = this.y2 = 0;
  }

  run(buf) {
    const { b0, b1, b2, a1, a2 } = this;
    let { x1, x2, y1, y2 } = this;
    for (let i = 0; i < buf.length; i++) {
      const x = buf[i];
      const y = b0 * x + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2;
      x2 = x1; x1 = x;
      y2 = y1; y1 = y;
      buf[i] = y;
    }
    Object.assign(this, { x1, x2, y1, y2 });
  }
}

class MicProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const target = options?.processorOptions?.targetRate || 16000;
    this.step = sampleRate / target; // input samples per output sample
    this.frameSamples = Math.round((target * FRAME_MS) / 1000);
    // Anti-aliasing: cut at 0.45 of the output rate (7.2 kHz for 16 kHz) before resampling.
    this.filters = sampleRate > target
      ? BUTTERWORTH_8_Q.map((q) => new Biquad(0.45 * target, sampleRate, q))
      : [];
    this.work = new Float32Array(128);
    this.pos = 0; // position of the next output sample, in input samples from this block's start
    this.prev = 0; // the previous block's last filtered sample (index -1)
    this.newFrame();
    this.running = true;
    this.port.onmessage = (event) => {
      if (event.data === "stop") this.running = false;
    };
  }

  newFrame() {
    this.frame = new ArrayBuffer(this.frameSamples * 2);
    this.view = new DataView(this.frame);
    this.fill = 0;
    this.sumSq = 0;
    this.peak = 0;
  }

  emit(y) {
    const s = y > 1 ? 1 : y < -1 ? -1 : y;
    this.view.setInt16(this.fill * 2, Math.round(s < 0 ? s * 32768 : s * 32767), true);
    this.sumSq += s * s;
    const a = Math.abs(s);
    if (a > this.peak) this.peak = a;
    if (++this.fill === this.frameSamples) {
      const rms = Math.sqrt(this.sumSq / this.frameSamples);
      this.port.postMessage({ pcm: this.frame, rms, peak: this.peak }, [this.frame]);
      this.newFrame();
    }
  }

  process(inputs) {
    if (!this.running) return false;
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true; // no input connected (yet)
    const n = channels[0].length;
    if (this.work.length !== n) this.work = new Float32Array(n);
    const x = this.work;
    x.set(channels[0]);
    for (let c = 1; c < channels.length; c++) {
      const ch = channels[c];
      for (let i = 0; i < n; i++) x[i] += ch[i];
    }
    if (channels.length > 1) for (let i = 0; i < n; i++) x[i] /= channels.length;
    for (const f of this.filters) f.run(x);

    // Linear interpolation at fractional positions; index -1 is the previous block's last sample.
    let t = this.pos;
    while (t <= n - 1) {
      const i = Math.floor(t);
      const frac = t - i;
      const a = i < 0 ? this.prev : x[i];
      this.emit(frac === 0 ? a : a + (x[i + 1] - a) * frac);
      t += this.step;
    }
    this.pos = t - n;
    this.prev = x[n - 1];
    return true;
  }
}

registerProcessor("aria-mic", MicProcessor);
