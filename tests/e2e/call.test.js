// Phase 1: a real call between two headless Chromium pages through the UI, against
// the real server binary.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.js';
import { launchBrowser, serverAndBrowser, newPerson, meetInNewCall, joinFromLobby, ROOM_URL, waitFor, framesDecoded, screenshot, dumpConsole } from './lib/browser.js';


async function status(page) {
  return page.locator('#status').getAttribute('data-state');
}

async function waitStatus(page, state, timeoutMs = 20_000) {
  await page.locator(`#status[data-state="${state}"]`).waitFor({ state: 'attached', timeout: timeoutMs });
}

// The call tests run without the media leg (--no-media) unless they test it: detection
// costs CPU that the 2-core CI machine needs for the browsers.
test('two pages call each other; third is refused; leaving is noticed', async (t) => {
  const { server, browser } = await serverAndBrowser(t, { args: ['--no-media'] });
  const pages = [];
  try {
    const a = await newPerson(browser, server.url, 'A');
    const b = await newPerson(browser, server.url, 'B');
    const c = await newPerson(browser, server.url, 'C');
    pages.push(a, b, c);

    // A starts a call from the landing page, with a display name.
    await a.goto('/');
    await a.getByTestId('name-input').fill('Alice');
    await a.getByTestId('new-call').click();
    await a.waitForURL(ROOM_URL);
    // Without a detector (--no-media) the lobby offers no analysis and says so.
    await a.getByTestId('lobby').waitFor({ state: 'visible' });
    assert.equal(await a.getByTestId('lobby-analysis').isVisible(), false);
    assert.match(await a.getByTestId('lobby-where').textContent(), /does not analyse video/);
    assert.equal(await a.getByTestId('lobby-name').inputValue(), 'Alice', 'the name typed on the landing page');
    await joinFromLobby(a);
    const roomUrl = a.url();
    const roomId = ROOM_URL.exec(roomUrl)[1];
    assert.match(roomId, /^[A-Za-z0-9_-]{22}$/);
    await waitStatus(a, 'waiting');
    // Copy link puts the room URL on the clipboard.
    await a.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
    await a.getByTestId('copy-link').click();
    assert.equal(await a.evaluate(() => navigator.clipboard.readText()), roomUrl);

    // B opens A's link.
    const openedAt = Date.now();
    await b.goto(roomUrl);
    await joinFromLobby(b);
    await waitStatus(a, 'connected');
    await waitStatus(b, 'connected');
    const connectedMs = Date.now() - openedAt;
    assert.equal(await a.locator('[data-role=remote]').count(), 1);
    assert.equal(await b.locator('[data-role=remote]').count(), 1);
    // B sees A's name on A's tile.
    await b.locator('[data-role=remote] .who', { hasText: 'Alice' }).waitFor();

    // Each decodes the other's video.
    for (const [name, page] of [['A', a], ['B', b]]) {
      const n = await waitFor(async () => {
        const f = await framesDecoded(page);
        return f > 30 ? f : 0;
      }, { timeoutMs: 30_000, message: `${name} to decode > 30 remote video frames` });
      assert.ok(n > 30);
    }
    const decodedMs = Date.now() - openedAt;

    // Chat over the data channel, both ways.
    await a.getByTestId('chat-input').fill('hello from A');
    await a.getByTestId('chat-send').click();
    await b.locator('#chat-log li.theirs', { hasText: 'hello from A' }).waitFor({ timeout: 10_000 });
    await b.getByTestId('chat-input').fill('hi A, B here');
    await b.getByTestId('chat-input').press('Enter');
    await a.locator('#chat-log li.theirs', { hasText: 'hi A, B here' }).waitFor({ timeout: 10_000 });

    // B names itself in the call; A's tile for B follows (over the data channel).
    await b.getByTestId('chat-name').fill('Bob');
    await b.getByTestId('chat-name').press('Enter');
    await a.locator('[data-role=remote] .who', { hasText: 'Bob' }).waitFor({ timeout: 10_000 });
    await b.locator('#chat-log li.mine .from', { hasText: 'You' }).first().waitFor();

    // Controls change what the peer receives: muting disables the track we send.
    await a.getByTestId('mic').click();
    assert.equal(await a.getByTestId('mic').getAttribute('aria-pressed'), 'true');
    const micEnabled = await a.evaluate(() => {
      for (const pc of window.callsight.peerConnections().values()) {
        for (const s of pc.getSenders()) if (s.track?.kind === 'audio') return s.track.enabled;
      }
      return null;
    });
    assert.equal(micEnabled, false);
    await a.getByTestId('mic').click();

    // A third person gets "room is full" (capacity 2 by default).
    await c.goto(roomUrl);
    await c.getByTestId('join').click();
    await c.getByTestId('room-full').waitFor({ state: 'visible', timeout: 10_000 });
    assert.equal(await status(c), 'full');

    await screenshot(a, 'call-a');
    await screenshot(b, 'call-b');
    await screenshot(c, 'call-c-room-full');

    // B's tab goes away: A shows "peer left" within 10 s.
    const closedAt = Date.now();
    await b.close();
    await waitStatus(a, 'peer-left', 10_000);
    const took = Date.now() - closedAt;
    assert.ok(took <= 10_000, `peer-left took ${took} ms`);
    process.stdout.write(
      `B opens the link → both connected: ${connectedMs} ms; → both decoded > 30 frames: ${decodedMs} ms; ` +
        `B's tab closed → A shows peer left: ${took} ms\n`,
    );
    assert.equal(await a.locator('[data-role=remote]').count(), 0);
    await screenshot(a, 'call-a-peer-left');
  } catch (err) {
    dumpConsole(pages);
    process.stderr.write(`server log:\n${server.logs.join('\n')}\n`);
    throw err;
  }
});

test('server restart: pages rejoin with their ids, keep the call, deliver an offer made meanwhile', async (t) => {
  let server = await startServer();
  const { browser, close } = await launchBrowser();
  const pages = [];
  t.after(async () => {
    await close();
    await server.stop();
  });
  try {
    // Both allow analysis: the server leg must come back after the restart too.
    const [a, b] = await meetInNewCall(browser, server.url, ['A', 'B'], { analyse: true });
    pages.push(a, b);
    await waitStatus(a, 'connected');
    await waitStatus(b, 'connected');
    const mediaOn = (await (await fetch(`${server.url}/api/config`)).json()).media?.enabled === true;
    if (mediaOn) {
      for (const p of [a, b]) {
        await p.waitForFunction(() => window.callsight.publishState === 'publishing', null, { timeout: 20_000 });
      }
    }
    const idA = await a.evaluate(() => window.callsight.id);
    const idB = await b.evaluate(() => window.callsight.id);
    // Mark the live RTCPeerConnection objects to tell later whether they were kept.
    for (const p of [a, b]) {
      await p.evaluate(() => {
        for (const pc of window.callsight.peerConnections().values()) pc.__e2eMark = true;
      });
    }

    const ufragSeenByB = () =>
      b.evaluate(() => /a=ice-ufrag:(\S+)/.exec([...window.callsight.peerConnections().values()][0].remoteDescription.sdp)?.[1]);
    const ufragBefore = await ufragSeenByB();

    const port = server.port;
    await server.stop();
    await a.locator('#status[data-signaling=down]').waitFor({ state: 'attached', timeout: 10_000 });
    // A network blip while the server is away: A restarts ICE, but its offer cannot be
    // sent. It must go out after the rejoin.
    await a.evaluate(() => [...window.callsight.peerConnections().values()][0].restartIce());
    await a.waitForFunction(() => [...window.callsight.peerConnections().values()][0].signalingState === 'have-local-offer');
    server = await startServer({ port });

    // Both rejoin by themselves (backoff) and resume their ids.
    for (const [p, id] of [[a, idA], [b, idB]]) {
      await p.locator('#status[data-signaling=joined]').waitFor({ state: 'attached', timeout: 20_000 });
      assert.equal(await p.evaluate(() => window.callsight.id), id);
    }
    // The offer lost during the outage was sent again: B has A's new ICE credentials.
    await waitFor(async () => (await ufragSeenByB()) !== ufragBefore, { message: "B to get A's ICE-restart offer after the rejoin" });
    await a.waitForFunction(() => [...window.callsight.peerConnections().values()][0].signalingState === 'stable');
    // The server leg is per WebSocket session: both publish again to the new server.
    if (mediaOn) {
      for (const p of [a, b]) {
        await p.waitForFunction(() => window.callsight.publishState === 'publishing', null, { timeout: 20_000 });
      }
    }
    // The peer connections that survived are the same objects, still connected.
    for (const p of [a, b]) {
      const kept = await p.evaluate(() => [...window.callsight.peerConnections().values()].map((pc) => [pc.__e2eMark === true, pc.connectionState]));
      assert.deepEqual(kept, [[true, 'connected']]);
      await waitStatus(p, 'connected');
    }
    // The chat (data channel) still works; hanging up reaches the other side through
    // the new server.
    await b.getByTestId('chat-input').fill('still here');
    await b.getByTestId('chat-send').click();
    await a.locator('#chat-log li.theirs', { hasText: 'still here' }).waitFor({ timeout: 10_000 });
    await screenshot(a, 'restart-a');
    await b.getByTestId('hangup').click();
    await waitStatus(a, 'peer-left', 10_000);
  } catch (err) {
    dumpConsole(pages);
    process.stderr.write(`server log:\n${server.logs.join('\n')}\n`);
    throw err;
  }
});

test('mesh room of three with --room-capacity 3', async (t) => {
  const { server, browser } = await serverAndBrowser(t, { args: ['--room-capacity', '3', '--no-media'] });
  const pages = [];
  try {
    pages.push(...(await meetInNewCall(browser, server.url, ['A', 'B', 'C'])));
    const [a, b, c] = pages;
    for (const p of pages) {
      await waitStatus(p, 'connected', 30_000);
      await waitFor(async () => (await p.locator('[data-role=remote][data-state=connected]').count()) === 2, {
        message: 'two connected remote tiles',
      });
    }
    for (const p of pages) await waitFor(async () => (await framesDecoded(p)) > 30, { timeoutMs: 30_000, message: 'remote frames' });
    await screenshot(c, 'mesh-c');

    // C's renderer crashes (the tab dies, nothing is said): A and B drop C's tile within
    // 10 s and stay connected to each other.
    const cdp = await c.context().newCDPSession(c);
    const crashedAt = Date.now();
    cdp.send('Page.crash').catch(() => {}); // never answers: the page is gone
    for (const p of [a, b]) {
      await waitFor(async () => (await p.locator('[data-role=remote]').count()) === 1, {
        timeoutMs: 10_000,
        message: "the crashed peer's tile to go",
      });
      await waitStatus(p, 'connected', 5000);
    }
    process.stdout.write(`C crashed → A and B dropped it in ${Date.now() - crashedAt} ms\n`);
  } catch (err) {
    dumpConsole(pages);
    process.stderr.write(`server log:\n${server.logs.join('\n')}\n`);
    throw err;
  }
});

test('ICE restart from both sides at once (glare) recovers; screen share swaps the sent track and back', async (t) => {
  const { server, browser } = await serverAndBrowser(t, { args: ['--no-media'] });
  const pages = [];
  try {
    const [a, b] = await meetInNewCall(browser, server.url);
    pages.push(a, b);
    await waitStatus(a, 'connected');
    await waitStatus(b, 'connected');

    const ufrag = (p) =>
      p.evaluate(() => {
        const pc = [...window.callsight.peerConnections().values()][0];
        return /a=ice-ufrag:(\S+)/.exec(pc.remoteDescription?.sdp ?? '')?.[1] ?? null;
      });
    const before = [await ufrag(a), await ufrag(b)];
    // Both sides restart ICE in the same tick: offers cross, the polite side yields.
    await Promise.all(
      [a, b].map((p) => p.evaluate(() => [...window.callsight.peerConnections().values()][0].restartIce())),
    );
    for (const [i, p] of [a, b].entries()) {
      await waitFor(async () => {
        const u = await ufrag(p);
        const st = await p.evaluate(() => {
          const pc = [...window.callsight.peerConnections().values()][0];
          return `${pc.signalingState}/${pc.iceConnectionState}`;
        });
        return u !== null && u !== before[i] && (st === 'stable/connected' || st === 'stable/completed');
      }, { message: 'new ICE credentials, stable and connected' });
    }
    const f0 = await framesDecoded(b);
    await waitFor(async () => (await framesDecoded(b)) > f0 + 15, { message: 'video still flowing after restart' });

    // Screen share: the video sender switches to the screen track, then back to the camera.
    const sentVideo = (p) =>
      p.evaluate(() => {
        const pc = [...window.callsight.peerConnections().values()][0];
        const s = pc.getSenders().find((x) => x.track?.kind === 'video');
        return s ? `${s.track.id}|${s.track.label}|${s.track.readyState}` : null;
      });
    const camera = await sentVideo(a);
    await a.getByTestId('share').click();
    await a.locator('#share[aria-pressed=true]').waitFor({ state: 'attached', timeout: 10_000 });
    const screen = await sentVideo(a);
    assert.notEqual(screen, camera, 'sharing must replace the sent video track');
    const f1 = await framesDecoded(b);
    await waitFor(async () => (await framesDecoded(b)) > f1 + 15, { message: 'B decodes the shared screen' });
    await screenshot(b, 'share-b');
    await a.getByTestId('share').click();
    await a.locator('#share[aria-pressed=false]').waitFor({ state: 'attached', timeout: 10_000 });
    assert.equal(await sentVideo(a), camera, 'stopping the share must return to the (live) camera');
    const f2 = await framesDecoded(b);
    await waitFor(async () => (await framesDecoded(b)) > f2 + 15, { message: 'B decodes the camera again' });
  } catch (err) {
    dumpConsole(pages);
    process.stderr.write(`server log:\n${server.logs.join('\n')}\n`);
    throw err;
  }
});

test('over https with --tls-self-signed (wss signaling)', async (t) => {
  const { server, browser } = await serverAndBrowser(t, { args: ['--tls-self-signed', '--no-media'] });
  const pages = [];
  try {
    assert.match(server.url, /^https:\/\//);
    const [a, b] = await meetInNewCall(browser, server.url);
    pages.push(a, b);
    await waitStatus(a, 'connected');
    await waitStatus(b, 'connected');
    await waitFor(async () => (await framesDecoded(a)) > 30, { timeoutMs: 30_000, message: 'A decodes B over the https page' });
  } catch (err) {
    dumpConsole(pages);
    process.stderr.write(`server log:\n${server.logs.join('\n')}\n`);
    throw err;
  }
});

test('a malformed room link shows an error page, not a broken call', async (t) => {
  const { server, browser } = await serverAndBrowser(t, { args: ['--no-media'] });
  const p = await newPerson(browser, server.url, 'A');
  for (const bad of ['/r/short', '/r/has%20space%20in%20it', `/r/${'x'.repeat(65)}`]) {
    await p.goto(bad);
    await p.getByTestId('fatal').waitFor({ state: 'visible', timeout: 10_000 });
    assert.equal(await p.getByTestId('room').isVisible(), false);
  }
});
