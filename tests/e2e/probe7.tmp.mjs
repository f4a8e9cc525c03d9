import { startServer } from './lib/server.js';
import { launchBrowser, newPerson } from './lib/browser.js';
const server = await startServer();
const { browser, close } = await launchBrowser({ fakeVideo: '/work/main/test-data/person.y4m' });
const a = await newPerson(browser, server.url, 'A');
const b = await newPerson(browser, server.url, 'B');
await a.goto('/r/abcdefghijklmnop');
await b.goto('/r/abcdefghijklmnop');
await a.waitForSelector('#status[data-state=connected]');
await new Promise(r => setTimeout(r, 6000));
const r = await a.evaluate(async () => {
  const v = document.querySelector('[data-role=remote] video');
  const metas = await new Promise(res => { const arr = []; const f = (now, m) => { arr.push({ ...m, now, pnow: performance.now() }); if (arr.length < 3) v.requestVideoFrameCallback(f); else res(arr); }; v.requestVideoFrameCallback(f); });
  const bid = [...window.callsight.peerConnections().keys()][0];
  return { metas, samples: window.callsight.syncSamples(bid).length, self: window.callsight.syncSamples('self').slice(-3), offsets: window.callsight.clockOffsets(), wall: Date.now(), origin: performance.timeOrigin };
});
console.log(JSON.stringify(r, null, 1));
await close(); await server.stop();
