// The topology rule (docs/protocol.md, "Topology"): where a room's media goes.

// A peer-to-peer connection that is not up this long after it was made (or whose ICE
// failed) moves the call via the server: both browsers reach the server even when they
// cannot reach each other (symmetric NATs, no TURN, firewalls).
export const P2P_FALLBACK_MS = 10_000;

/**
 * Via the server when the server has a media leg and either someone in the room lets the
 * server analyse their video, more than two people are in it, or the peer-to-peer path
 * failed; otherwise peer to peer. A call that went via the server stays there
 * (switching back would interrupt it again).
 * @param {{mediaEnabled: boolean, participants: number, analysis: boolean, viaServer: boolean, p2pFailed?: boolean}} o
 */
export function viaServerRule({ mediaEnabled, participants, analysis, viaServer, p2pFailed = false }) {
  if (!mediaEnabled) return false;
  return viaServer || participants > 2 || analysis || p2pFailed;
}
