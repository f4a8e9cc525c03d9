// A video delay line for the self-view: holds each camera frame for `delayMs` before
// showing it, so that the frame and its detection result appear together
// (docs/sync.md). Uses Chromium's MediaStreamTrackProcessor/Generator ("breakout box");
// the frames keep their capture timestamps, so requestVideoFrameCallback still reports
// the original captureTime on the delayed track.
//
// Frames are copied out of the capture buffer at once: holding the camera's own
// buffers for a few hundred ms could exhaust its small pool and stall capture.

const MAX_HELD = 45; // 1.5 s at 30 fps: a bound on memory whatever delayMs says

export function delayLineSupported() {
  return typeof MediaStreamTrackProcessor === 'function' && typeof MediaStreamTrackGenerator === 'function';
}

export class DelayLine {
  /** @param {MediaStreamTrack} source a video track */
  constructor(source) {
    this.source = source;
    this.delayMs = 0;
    this.queue = []; // {frame, due}
    this.closed = false;
    this.timer = null;
    this.processor = new MediaStreamTrackProcessor({ track: source });
    this.generator = new MediaStreamTrackGenerator({ kind: 'video' });
    this.writer = this.generator.writable.getWriter();
    this.reader = this.processor.readable.getReader();
    this.#pump();
  }

  /** The delayed track to display. */
  get track() {
    return this.generator;
  }

  setDelay(ms) {
    this.delayMs = Math.max(0, ms);
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.reader.cancel().catch(() => {});
    for (const { frame } of this.queue) frame.close();
    this.queue = [];
    this.writer.close().catch(() => {});
    this.generator.stop();
  }

  async #pump() {
    while (!this.closed) {
      let res;
      try {
        res = await this.reader.read();
      } catch {
        break;
      }
      if (res.done || this.closed) {
        res.value?.close();
        break;
      }
      const src = res.value;
      let frame;
      try {
        frame = await copyFrame(src);
      } catch {
        frame = src.clone(); // formats copyTo cannot handle: hold the original
      } finally {
        src.close();
      }
      if (this.closed) {
        frame.close();
        break;
      }
      this.queue.push({ frame, due: performance.now() + this.delayMs });
      while (this.queue.length > MAX_HELD) this.queue.shift().frame.close();
      this.#release();
    }
  }

  #release() {
    clearTimeout(this.timer);
    const now = performance.now();
    while (this.queue.length && this.queue[0].due <= now + 1) {
      const { frame } = this.queue.shift();
      this.writer.write(frame).catch(() => frame.close());
    }
    if (this.queue.length && !this.closed) {
      this.timer = setTimeout(() => this.#release(), Math.max(1, this.queue[0].due - now));
    }
  }
}

async function copyFrame(src) {
  const buf = new Uint8Array(src.allocationSize());
  const layout = await src.copyTo(buf);
  return new VideoFrame(buf, {
    format: src.format,
    codedWidth: src.codedWidth,
    codedHeight: src.codedHeight,
    timestamp: src.timestamp,
    duration: src.duration ?? undefined,
    layout,
    visibleRect: src.visibleRect ?? undefined,
    displayWidth: src.displayWidth,
    displayHeight: src.displayHeight,
    colorSpace: src.colorSpace,
  });
}
