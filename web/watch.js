// The WHEP player page: /watch/<room>[/<participant>]#key=<view key> (or #token=<room token>).
// One receive-only RTCPeerConnection to the server (docs/whep.md): the participant's
// video and audio as the server forwards them (publisher's RTP timestamps), and its
// detections on the data channel `detections`, drawn by overlay.js exactly as on the
// call page, matched by RTP timestamp.
//
// Test hook: window.callsight = { state(), drawn(), results() }.

import { DetectionStore, OverlaySettings, TileOverlay } from './overlay.js';

const ROOM_RE = /^[A-Za-z0-9_-]{8,64}$/;
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const SECRET_RE = /^[A-Za-z0-9_.~+/=-]{1,4096}$/;
// No trickle ICE: the offer waits for its candidates, at most this long.
const GATHER_MS = 3000;
// A detections message larger than this is not parsed.
const MAX_MESSAGE_BYTES = 256 * 1024;

const $ = (sel) => document.querySelector(sel);

function setStatus(state, text) {
  const el = $('#watch-status');
  el.dataset.state = state;
  el.textContent = text;
}

/**
 * The key or token in the fragment (never sent to the server with the page request):
 * taken out of the address bar at once and kept in sessionStorage for a reload.
 */
function takeSecret(path) {
  const store = `callsight.watch.${path}`;
  const hash = new URLSearchParams(window.location.hash.replace(/^#/, ''));
  let secret = hash.get('key') ?? hash.get('token');
  if (window.location.hash) {
    window.history.replaceState(window.history.state, '', window.location.pathname + window.location.search);
  }
  try {
    if (secret && SECRET_RE.test(secret)) sessionStorage.setItem(store, secret);
    else secret = sessionStorage.getItem(store);
  } catch {
    // no storage: the secret lives as long as this page
  }
  return secret && SECRET_RE.test(secret) ? secret : null;
}

function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === 'complete') resolve();
    };
    pc.addEventListener('icegatheringstatechange', done);
    setTimeout(resolve, GATHER_MS);
  });
}

const REFUSED = {
  401: 'This link has no valid key for this room.',
  403: 'This token does not allow watching this room.',
  404: 'Nobody with this link is in the room (yet).',
  406: 'This browser cannot receive H.264 video.',
  503: 'The server is busy; try again in a moment.',
};

async function main() {
  const parts = window.location.pathname.split('/').filter(Boolean);
  const [, room, participant] = parts;
  if (parts[0] !== 'watch' || !ROOM_RE.test(room ?? '') || (participant !== undefined && !ID_RE.test(participant))) {
    setStatus('failed', 'Not a watch link.');
    return;
  }
  const endpoint = participant ? `/whep/${room}/${participant}` : `/whep/${room}`;
  const secret = takeSecret(endpoint);
  $('#watch-who').textContent = participant ? `Participant ${participant}` : 'Room';

  const store = new DetectionStore();
  const settings = new OverlaySettings();
  let shown = participant ?? null; // the room-wide form learns it from the detections
  const video = $('#watch-video');
  const overlay = new TileOverlay({
    video,
    canvas: $('#watch-overlay'),
    list: $('#watch-list'),
    readout: $('#watch-stats'),
    store,
    settings,
    participant: () => shown,
    isSelf: false,
    clockOffset: () => null,
    byRtp: () => true,
  });

  const config = await fetch('/api/config').then((r) => (r.ok ? r.json() : {})).catch(() => ({}));
  const pc = new RTCPeerConnection({ iceServers: Array.isArray(config.ice_servers) ? config.ice_servers : [] });
  window.callsight = {
    state: () => ({ connection: pc.connectionState, status: $('#watch-status').dataset.state, shown }),
    drawn: () => overlay.drawn,
    results: () => (shown ? (store.results.get(shown) ?? []).length : 0),
  };
  const vt = pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const caps = RTCRtpReceiver.getCapabilities?.('video');
  const h264 = caps?.codecs.filter((c) => c.mimeType.toLowerCase() === 'video/h264') ?? [];
  if (h264.length && vt.setCodecPreferences) vt.setCodecPreferences(h264);
  const channel = pc.createDataChannel('detections');
  channel.addEventListener('message', (e) => {
    if (typeof e.data !== 'string' || e.data.length > MAX_MESSAGE_BYTES) return;
    let msg;
    try {
      msg = JSON.parse(e.data);
    } catch {
      return;
    }
    if (msg?.type !== 'detections') return;
    if (!participant && msg.participant !== shown && typeof msg.participant === 'string') {
      if (shown) store.forget(shown);
      shown = msg.participant;
    }
    store.add(msg);
  });
  pc.addEventListener('track', (e) => {
    if (!video.srcObject) video.srcObject = new MediaStream();
    video.srcObject.addTrack(e.track);
  });
  pc.addEventListener('connectionstatechange', () => {
    const s = pc.connectionState;
    if (s === 'connected') setStatus('connected', 'Watching');
    else if (s === 'failed' || s === 'closed') setStatus('failed', 'The connection to the server was lost.');
  });
  $('#watch-unmute').addEventListener('click', (e) => {
    video.muted = !video.muted;
    e.currentTarget.setAttribute('aria-pressed', String(!video.muted));
    e.currentTarget.textContent = video.muted ? 'Unmute' : 'Mute';
  });

  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const headers = { 'Content-Type': 'application/sdp' };
  if (secret) headers.Authorization = `Bearer ${secret}`;
  let r;
  try {
    const post = { method: 'POST', headers, body: pc.localDescription.sdp };
    r = await fetch(endpoint, post);
    // Several nodes: the POST was redirected (307) to the node that runs the room's
    // media, and the browser dropped the key on the way (a cross-origin redirect).
    // Ask that node again, with the key.
    if (r.status === 401 && r.redirected && secret) r = await fetch(r.url, post);
  } catch {
    setStatus('failed', 'The server cannot be reached.');
    return;
  }
  if (r.status !== 201) {
    setStatus('failed', REFUSED[r.status] ?? `The server refused (${r.status}).`);
    pc.close();
    return;
  }
  // Relative to the node that answered (it may be another than this page's).
  const location = r.headers.get('Location') && new URL(r.headers.get('Location'), r.url).href;
  await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
  // Leaving the page ends the session at once (else the server's idle timeout does).
  window.addEventListener('pagehide', () => {
    if (location) fetch(location, { method: 'DELETE', keepalive: true }).catch(() => {});
    pc.close();
  });
}

main().catch((err) => {
  console.error(err);
  setStatus('failed', 'Something went wrong.');
});
