// The pre-join lobby of a room: camera and microphone preview, device pickers, name,
// mic/camera on-off, and the person's choice whether the server may analyse their
// video (remembered per browser). Nothing here talks to the server: the room is
// joined, and anything published, only after **Join** (app.js then starts the Call).

const ANALYSE_KEY = 'callsight.analyse';

const $ = (sel) => document.querySelector(sel);

/** The remembered choice: true / false, or null when this browser never chose. */
export function savedAnalyse(storage = globalThis.localStorage) {
  try {
    const v = storage?.getItem(ANALYSE_KEY);
    return v === 'on' ? true : v === 'off' ? false : null;
  } catch {
    return null;
  }
}

export function saveAnalyse(on, storage = globalThis.localStorage) {
  try {
    storage?.setItem(ANALYSE_KEY, on ? 'on' : 'off');
  } catch {
    // storage may be disabled: the choice then holds for this page only
  }
}

/** What the lobby tells the person about where their media goes. */
export function whereMediaGoes({ mediaEnabled, analyse }) {
  const p2p =
    'Your camera and microphone go straight to the other people in the call (peer to peer, encrypted); ' +
    'the server only introduces you. If no direct path exists, a relay passes the encrypted media on without being able to see it.';
  if (!mediaEnabled) return `${p2p} This server does not analyse video.`;
  const server =
    'A call of three or more, or one where someone allows analysis, runs via this server instead: ' +
    'everyone sends camera and microphone once, to the server, which passes them on to the others.';
  if (analyse) {
    return (
      `Because you allow analysis, your call runs via this server: your camera, microphone and screen shares go to it, ` +
      'it passes them on to the others, and it looks for objects in your video as it arrives and sends the boxes to everyone in the call.'
    );
  }
  return `${p2p} ${server} Your video is not analysed (nobody gets boxes for it). You still see boxes on the videos of people who allowed analysis.`;
}

// HD: the camera is sent as simulcast layers (publish.js), so a small tile costs no more.
const VIDEO = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };
const AUDIO = { echoCancellation: true, noiseSuppression: true };

export class Lobby {
  /**
   * @param {object} o
   * @param {string} o.name  the remembered display name
   * @param {boolean} o.mediaEnabled  the server analyses video (GET /api/config)
   * @param {boolean} [o.receiveOnly]  the access token does not allow publishing: no
   *   camera or microphone is opened
   */
  constructor({ name, mediaEnabled, receiveOnly = false }) {
    this.name = name;
    this.mediaEnabled = mediaEnabled;
    this.receiveOnly = receiveOnly;
    this.stream = new MediaStream();
    this.micMuted = false;
    this.camOff = false;
    this.mediaError = null;
    this.video = $('#lobby-video');
  }

  /** Shows the lobby; resolves with the person's choices when they click Join. */
  async run() {
    const form = $('#lobby-form');
    const nameInput = $('#lobby-name');
    nameInput.value = this.name;
    const avatar = () => {
      $('#lobby-preview .avatar').textContent = nameInput.value.trim()[0]?.toUpperCase() ?? '?';
    };
    nameInput.addEventListener('input', avatar);
    avatar();
    const analyse = $('#lobby-analyse');
    $('#lobby-analysis').hidden = !this.mediaEnabled || this.receiveOnly;
    analyse.checked = this.mediaEnabled && !this.receiveOnly && savedAnalyse() === true;
    const renderWhere = () => {
      $('#lobby-where').textContent = this.receiveOnly
        ? 'Your invitation lets you watch and listen only: no camera or microphone is opened, and nothing of yours is sent.'
        : whereMediaGoes({ mediaEnabled: this.mediaEnabled, analyse: analyse.checked });
    };
    analyse.addEventListener('change', () => {
      saveAnalyse(analyse.checked);
      renderWhere();
    });
    renderWhere();
    $('#lobby-mic').addEventListener('click', () => {
      this.micMuted = !this.micMuted;
      this.#render();
    });
    $('#lobby-cam').addEventListener('click', () => {
      this.camOff = !this.camOff;
      this.#render();
    });
    $('#lobby-camera').addEventListener('change', (e) => this.#useDevice('video', e.target.value));
    $('#lobby-microphone').addEventListener('change', (e) => this.#useDevice('audio', e.target.value));

    if (this.receiveOnly) {
      $('#lobby-camera').disabled = true;
      $('#lobby-microphone').disabled = true;
    } else {
      await this.#open();
      await this.#listDevices();
      navigator.mediaDevices.addEventListener?.('devicechange', () => this.#listDevices());
    }
    this.#render();
    const join = $('#join');
    join.disabled = false;
    nameInput.focus();

    await new Promise((resolve) => {
      form.addEventListener(
        'submit',
        (e) => {
          e.preventDefault();
          resolve();
        },
        { once: true },
      );
    });
    join.disabled = true;
    this.video.srcObject = null;
    return {
      name: nameInput.value.trim().slice(0, 64),
      stream: this.stream,
      micMuted: this.micMuted,
      camOff: this.camOff,
      mediaError: this.mediaError,
      analyse: this.mediaEnabled && !this.receiveOnly && analyse.checked,
    };
  }

  async #open() {
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ audio: AUDIO, video: VIDEO });
    } catch (err) {
      // Join anyway, receive-only: a call without a camera is still a call.
      console.warn('getUserMedia failed', err);
      this.mediaError = err?.name === 'NotAllowedError' ? 'Camera and microphone were blocked.' : 'No camera or microphone found.';
      try {
        this.stream = await navigator.mediaDevices.getUserMedia({ audio: AUDIO });
      } catch {
        this.stream = new MediaStream();
      }
    }
    this.video.srcObject = this.stream;
    this.video.play().catch(() => {});
  }

  /** Swaps the camera or microphone for the device picked. */
  async #useDevice(kind, deviceId) {
    const constraints = kind === 'video' ? { video: { ...VIDEO, deviceId: { exact: deviceId } } } : { audio: { ...AUDIO, deviceId: { exact: deviceId } } };
    let fresh;
    const join = $('#join');
    join.disabled = true; // joining with the old device while the new one opens would race
    try {
      fresh = (await navigator.mediaDevices.getUserMedia(constraints)).getTracks()[0];
    } catch (err) {
      console.warn(`cannot open ${kind} device`, err);
      return;
    } finally {
      join.disabled = false;
    }
    for (const t of kind === 'video' ? this.stream.getVideoTracks() : this.stream.getAudioTracks()) {
      this.stream.removeTrack(t);
      t.stop();
    }
    this.stream.addTrack(fresh);
    this.video.srcObject = this.stream;
    this.video.play().catch(() => {});
    this.#render();
  }

  async #listDevices() {
    let devices = [];
    try {
      devices = await navigator.mediaDevices.enumerateDevices();
    } catch {
      // no list: the pickers stay empty and the defaults are used
    }
    const fill = (select, kind, current, fallback) => {
      const list = devices.filter((d) => d.kind === kind && d.deviceId);
      select.replaceChildren(
        ...list.map((d, i) => {
          const o = document.createElement('option');
          o.value = d.deviceId;
          o.textContent = d.label || `${fallback} ${i + 1}`;
          return o;
        }),
      );
      if (current && list.some((d) => d.deviceId === current)) select.value = current;
      select.disabled = list.length === 0;
    };
    const vid = this.stream.getVideoTracks()[0]?.getSettings().deviceId;
    const aud = this.stream.getAudioTracks()[0]?.getSettings().deviceId;
    fill($('#lobby-camera'), 'videoinput', vid, 'Camera');
    fill($('#lobby-microphone'), 'audioinput', aud, 'Microphone');
  }

  #render() {
    for (const t of this.stream.getAudioTracks()) t.enabled = !this.micMuted;
    for (const t of this.stream.getVideoTracks()) t.enabled = !this.camOff;
    const hasVideo = this.stream.getVideoTracks().length > 0;
    const hasAudio = this.stream.getAudioTracks().length > 0;
    $('#lobby-preview').dataset.video = hasVideo && !this.camOff ? 'on' : 'off';
    const mic = $('#lobby-mic');
    mic.setAttribute('aria-pressed', String(this.micMuted));
    mic.querySelector('.lbl').textContent = this.micMuted ? 'Mic off' : 'Mic on';
    mic.disabled = !hasAudio;
    const cam = $('#lobby-cam');
    cam.setAttribute('aria-pressed', String(this.camOff));
    cam.querySelector('.lbl').textContent = this.camOff ? 'Camera off' : 'Camera on';
    cam.disabled = !hasVideo;
    $('#lobby-error').textContent = this.mediaError ?? '';
  }
}
