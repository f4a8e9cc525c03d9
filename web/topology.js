// The topology rule (docs/protocol.md, "Topology"): where a room's media goes.

/**
 * Via the server when the server has a media leg and either someone in the room lets the
 * server analyse their video or more than two people are in it; otherwise peer to peer.
 * A call that went via the server stays there (switching back would interrupt it again).
 * @param {{mediaEnabled: boolean, participants: number, analysis: boolean, viaServer: boolean}} o
 */
export function viaServerRule({ mediaEnabled, participants, analysis, viaServer }) {
  if (!mediaEnabled) return false;
  return viaServer || participants > 2 || analysis;
}
