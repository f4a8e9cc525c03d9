// Callsight web client, entry point. Plain ES modules, no build step.
//
// Module map:
//   app.js        routing: landing page (/) or a room (/r/<room>); test hooks
//   call.js       the session in a room: media, signaling, peers, server leg
//   signaling.js  WebSocket client with reconnect + backoff
//   peer.js       one RTCPeerConnection per remote peer (perfect negotiation, chat, ICE restart)
//   publish.js    the connection to the server: publish (H.264 simulcast, abs-capture-time), subscribe
//   viewsize.js   how large each received video is shown, told to the server (track-settings)
//   lobby.js      pre-join lobby: preview, devices, name, the analysis choice
//   grants.js     what a join link's access token allows (read, not checked)
//   overlay.js    detection buffer + frame-synced canvas overlay (docs/sync.md)
//   track.js      where a tracked box is on a given frame (prediction, fading)
//   ui.js         DOM rendering and controls

import { Call } from './call.js';
import { RoomView, showView } from './ui.js';
import { Lobby, saveAnalyse } from './lobby.js';
import { tokenGrants } from './grants.js';

const NAME_KEY = 'callsight.name';
const ROOM_RE = /^[A-Za-z0-9_-]{8,64}$/;

/** 22 characters of base64url from 16 crypto-random bytes (128 bits). */
export function newRoomId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function savedName() {
  try {
    return (localStorage.getItem(NAME_KEY) ?? '').slice(0, 64);
  } catch {
    return '';
  }
}

function saveName(name) {
  try {
    if (name) localStorage.setItem(NAME_KEY, name);
    else localStorage.removeItem(NAME_KEY);
  } catch {
    // storage may be disabled; the name is optional
  }
}

const TOKEN_RE = /^[A-Za-z0-9_.~+/=-]{1,4096}$/;

/**
 * The access token of a join link (`/r/<room>#token=…`). It is taken out of the URL
 * bar at once (history.replaceState), so it is not copied with "Copy link", kept in
 * the history entry, or shown on screen; the tab keeps it in sessionStorage for a
 * reload or "Rejoin". Fragments never reach servers or referrers.
 */
function takeToken(roomId) {
  const key = `callsight.token.${roomId}`;
  const hash = new URLSearchParams(window.location.hash.replace(/^#/, ''));
  let token = hash.get('token');
  if (hash.has('token')) {
    window.history.replaceState(window.history.state, '', window.location.pathname + window.location.search);
  }
  try {
    if (token && TOKEN_RE.test(token)) sessionStorage.setItem(key, token);
    else token = sessionStorage.getItem(key);
  } catch {
    // no storage: the token lives as long as this page
  }
  return token && TOKEN_RE.test(token) ? token : null;
}

function fatal(title, text) {
  document.querySelector('#fatal-title').textContent = title;
  document.querySelector('#fatal-text').textContent = text;
  showView('fatal');
}

function landing() {
  showView('landing');
  const input = document.querySelector('#name');
  input.value = savedName();
  document.querySelector('#start-form').addEventListener('submit', (e) => {
    e.preventDefault();
    saveName(input.value.trim().slice(0, 64));
    window.location.assign(`/r/${newRoomId()}`);
  });
}

async function room(roomId) {
  const token = takeToken(roomId);
  if (!ROOM_RE.test(roomId)) {
    fatal('This link is not valid', 'A room link ends in 8 to 64 letters, digits, "-" or "_".');
    return;
  }
  if (!window.RTCPeerConnection || !navigator.mediaDevices) {
    fatal('Browser not supported', 'This browser cannot make WebRTC calls (or the page is not served over https).');
    return;
  }
  let config;
  try {
    const res = await fetch('/api/config', { cache: 'no-store' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    config = await res.json();
  } catch (err) {
    fatal('Cannot reach the server', String(err?.message ?? err));
    return;
  }
  // The lobby first: nothing is sent to the server (no join, no publish) before Join.
  showView('lobby');
  document.title = `Callsight · join ${roomId.slice(0, 6)}…`;
  // A token that may not publish: no camera or microphone is opened; the page receives only.
  const receiveOnly = !tokenGrants(token).canPublish;
  const lobby = new Lobby({ name: savedName(), mediaEnabled: Boolean(config.media?.enabled), receiveOnly });
  const choice = await lobby.run();
  saveName(choice.name);
  const call = new Call({ room: roomId, name: choice.name, config, token, media: choice, analyse: choice.analyse, receiveOnly });
  const view = new RoomView(call);
  view.onNameChange = saveName;
  view.onAnalyseChange = saveAnalyse;
  view.mount();
  exposeTestHooks(call, view);
  await call.start();
}

// Read-only handle for tests and debugging: ids, states and the live
// RTCPeerConnection objects (for getStats()). Nothing here changes the call.
function exposeTestHooks(call, view) {
  const hooks = {
    get id() {
      return call.myId;
    },
    get room() {
      return call.room;
    },
    get status() {
      return call.status;
    },
    get publishState() {
      return call.publishState;
    },
    /** @returns {Map<string, RTCPeerConnection>} remote peer id → its connection */
    peerConnections() {
      return new Map([...call.links].map(([id, link]) => [id, link.pc]));
    },
    /** The connection to the server (publishing, and receiving via the server), or null. */
    publisherConnection() {
      return call.publisher.pc;
    },
    /** True when this participant may not publish (its token) and only receives. */
    get receiveOnly() {
      return call.receiveOnly;
    },
    /** True when the call runs via the server (else peer to peer). */
    get viaServer() {
      return call.viaServer;
    },
    /** Pairs {frame, result} of capture times drawn on a tile ('self' or a peer id). */
    syncSamples(tile) {
      return view.syncSamples(tile);
    },
    /** Capture times of the results received for a tile's participant ('self' or a peer id). */
    resultCaptureTimes(tile) {
      return view.resultCaptureTimes(tile);
    },
    /**
     * What the overlay drew on the most recently displayed frame of every tile:
     * { [participantId]: { presentedFrames, mediaTime, captureTime, boxes: [{ label,
     * score, track_id, box: [x, y, w, h], alpha }], glassToGlassMs } } — boxes
     * normalised to the video frame, the self-view under our own id. A copy.
     */
    drawn() {
      return view.drawn();
    },
    /**
     * The newest `detections` result received for a participant: {track, rtp, capture,
     * width, height, count} (width/height: the frame the server detected on), or null.
     */
    latestDetection(participant) {
      const r = view.store.latest(participant);
      return r ? { track: r.track, rtp: r.rtp, capture: r.capture, width: r.width, height: r.height, count: r.detections.length } : null;
    },
    /** What this page last told the server about each received video: {mid: {participant, width, height}}. */
    trackSettings() {
      return call.publisher.viewSizes.snapshot();
    },
    clockOffsets() {
      return Object.fromEntries([...call.links].map(([id, l]) => [id, l.clockOffsetMs]));
    },
  };
  Object.defineProperty(window, 'callsight', { value: Object.freeze(hooks), writable: false, configurable: false });
}

const path = window.location.pathname;
const m = /^\/r\/([^/]+)\/?$/.exec(path);
if (m) {
  room(decodeURIComponent(m[1])).catch((err) => {
    console.error(err);
    fatal('Something went wrong', String(err?.message ?? err));
  });
} else {
  landing();
}
