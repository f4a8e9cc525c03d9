//! The signaling wire protocol, version 1 (`docs/protocol.md`).
//!
//! Messages are JSON objects tagged by `type`. Client messages are parsed here with a
//! precise error code, so a malformed message gets an `error` reply instead of a
//! dropped connection.

use crate::detections::TrackDetections;
use crate::ids::PeerId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const PROTOCOL_VERSION: u32 = 1;
/// `track-settings`: a mid is at most this long (str0m's mids are 16 bytes).
pub const MAX_MID_CHARS: usize = 16;
/// `track-settings`: a tile is at most this many device pixels wide or high.
pub const MAX_TILE_PIXELS: u32 = 16_384;

/// What a browser sends.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ClientMessage {
    Join(Join),
    /// Relayed verbatim to peer `to` in the sender's room.
    Signal {
        to: String,
        data: Value,
    },
    Leave,
    /// An SDP offer that opens the participant's connection to the server's media leg
    /// (a new one replaces the previous). Its sending m-lines publish tracks (detected,
    /// and forwarded to the room's subscribers); with `subscribe`, the same connection
    /// also receives the other participants' tracks, added by server `offer`s.
    Publish {
        sdp: String,
        #[serde(default)]
        subscribe: bool,
        /// The server may decode and detect the published video (default true; false
        /// only makes sense with `subscribe`: the video is then forwarded only).
        #[serde(default = "yes")]
        analyse: bool,
    },
    /// A renegotiation offer on the published connection (the participant adds or stops
    /// its own tracks); answered by `answer`.
    Offer {
        sdp: String,
    },
    /// The answer to the server's last `offer`.
    Answer {
        sdp: String,
    },
    /// The tile a received video track is shown in: `mid` on the participant's connection
    /// to the server, `width`×`height` in device pixels (0×0 = not shown). The server
    /// sends the simulcast layer that fits, and nothing while it is not shown.
    TrackSettings {
        mid: String,
        width: u32,
        height: u32,
    },
}

fn yes() -> bool {
    true
}

/// One track a subscribing participant receives on its connection to the server.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct SubscribedTrack {
    /// The m-line (transceiver mid) it arrives on, on the subscriber's connection.
    pub mid: String,
    /// The publishing participant.
    pub participant: String,
    /// The track as the publisher publishes it (what `detections.track` names).
    pub track: String,
    /// `video` or `audio`.
    pub kind: String,
}

/// The fields of a `join`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Join {
    pub room: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub version: Option<u32>,
    /// A peer id this tab held before its WebSocket was re-established.
    #[serde(default)]
    pub resume: Option<String>,
    /// The `resume_token` that came with that id's `joined`; without it `resume` is ignored.
    #[serde(default)]
    pub resume_token: Option<String>,
    /// A room access token (JWT), needed when the server runs with `--require-token`.
    #[serde(default)]
    pub token: Option<String>,
}

/// A participant as others see it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct PeerInfo {
    pub id: PeerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One entry of the `RTCIceServer` list a browser passes to `RTCPeerConnection`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What the server sends.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage {
    Joined {
        room: String,
        id: PeerId,
        peers: Vec<PeerInfo>,
        capacity: usize,
        protocol: u32,
        /// The secret that resumes this id after a reconnect; sent to this participant only.
        resume_token: String,
        /// STUN and TURN servers for this participant's peer connections; TURN entries
        /// carry credentials issued to this participant only. Filled in by the server.
        #[serde(default)]
        ice_servers: Vec<IceServer>,
        /// Without `--require-token`: the key that lets a WHIP encoder (OBS, GStreamer…)
        /// publish into this room (`Authorization: Bearer KEY` on `POST /whip/{room}`,
        /// docs/whip.md). Filled in by the server; absent when tokens are required.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ingest_key: Option<String>,
        /// Without `--require-token`: the key that lets a WHEP player watch this room's
        /// participants (`Authorization: Bearer KEY` on `POST /whep/{room}[/{participant}]`,
        /// docs/whep.md; the `/watch` page takes it in its URL fragment). Filled in by the
        /// server; absent when tokens are required.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        view_key: Option<String>,
    },
    PeerJoined {
        peer: PeerInfo,
    },
    PeerLeft {
        id: PeerId,
    },
    Signal {
        from: PeerId,
        data: Value,
    },
    PublishAnswer {
        sdp: String,
    },
    /// A renegotiation offer on the participant's connection to the server (tracks of
    /// others added or removed); `tracks` is everything it receives once it has answered.
    Offer {
        sdp: String,
        tracks: Vec<SubscribedTrack>,
    },
    /// The answer to the participant's renegotiation `offer`.
    Answer {
        sdp: String,
    },
    /// Objects found in one frame of a published track (`docs/sync.md`).
    Detections(TrackDetections),
    /// Shared rooms (`--redis`): the node that ran this participant's connection to the
    /// server is gone (or gave the room up); publish again (a fresh `publish`) and the
    /// room's media continues on a live node.
    MediaMoved {},
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl ServerMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error { code, message: message.into() }
    }

    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: no maps with non-string keys, no custom impls.
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!(r#"{{"type":"error","code":"internal","message":"{e}"}}"#))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    BadMessage,
    UnsupportedVersion,
    BadRoom,
    BadName,
    RoomFull,
    AlreadyJoined,
    NotJoined,
    UnknownPeer,
    TooLarge,
    RateLimited,
    MediaUnavailable,
    /// `--require-token`: the join carried no token.
    TokenRequired,
    /// The token is malformed, not yet valid, or its signature is wrong.
    TokenInvalid,
    /// The token's `exp` has passed.
    TokenExpired,
    /// The token is good but does not grant this (another room, no publish right).
    Forbidden,
    /// Shared rooms (`--redis`): the shared store is unreachable; new joins wait for it.
    Unavailable,
    Internal,
}

/// Parses one client frame. The error is ready to send back.
// The error is always the small `Error` variant; boxing it would burden every caller.
#[allow(clippy::result_large_err)]
pub fn parse_client(text: &str) -> Result<ClientMessage, ServerMessage> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ServerMessage::error(ErrorCode::BadMessage, format!("not JSON: {e}")))?;
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ServerMessage::error(ErrorCode::BadMessage, "a message needs a string field `type`"))?
        .to_owned();
    serde_json::from_value(value)
        .map_err(|e| ServerMessage::error(ErrorCode::BadMessage, format!("bad `{kind}` message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_client_message() {
        let join = parse_client(r#"{"type":"join","room":"abcdefgh","name":"Ann"}"#).unwrap();
        assert_eq!(
            join,
            ClientMessage::Join(Join { room: "abcdefgh".into(), name: Some("Ann".into()), ..Join::default() })
        );
        let sig = parse_client(r#"{"type":"signal","to":"x","data":{"candidate":{"candidate":"c"}}}"#).unwrap();
        assert_eq!(sig, ClientMessage::Signal { to: "x".into(), data: json!({"candidate":{"candidate":"c"}}) });
        assert_eq!(parse_client(r#"{"type":"leave","extra":1}"#).unwrap(), ClientMessage::Leave);
        assert!(matches!(
            parse_client(r#"{"type":"publish","sdp":"v=0"}"#),
            Ok(ClientMessage::Publish { subscribe: false, .. })
        ));
        assert!(matches!(
            parse_client(r#"{"type":"publish","sdp":"v=0","subscribe":true}"#),
            Ok(ClientMessage::Publish { subscribe: true, .. })
        ));
        assert!(matches!(parse_client(r#"{"type":"offer","sdp":"v=0"}"#), Ok(ClientMessage::Offer { .. })));
        assert!(matches!(parse_client(r#"{"type":"answer","sdp":"v=0"}"#), Ok(ClientMessage::Answer { .. })));
    }

    #[test]
    fn malformed_messages_get_bad_message() {
        for bad in [
            "",
            "nope",
            "[]",
            "{}",
            r#"{"type":5}"#,
            r#"{"type":"fly"}"#,
            r#"{"type":"join"}"#,
            r#"{"type":"signal","to":1,"data":{}}"#,
        ] {
            match parse_client(bad) {
                Err(ServerMessage::Error { code: ErrorCode::BadMessage, message }) => assert!(!message.is_empty()),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn server_messages_serialise_to_the_documented_shape() {
        let id = PeerId::parse("AAAAAAAAAAAAAAAA").unwrap();
        let v: Value = serde_json::from_str(&ServerMessage::PeerLeft { id: id.clone() }.to_json()).unwrap();
        assert_eq!(v, json!({"type":"peer-left","id":"AAAAAAAAAAAAAAAA"}));
        let v: Value = serde_json::from_str(&ServerMessage::error(ErrorCode::RoomFull, "full").to_json()).unwrap();
        assert_eq!(v, json!({"type":"error","code":"room-full","message":"full"}));
        let det = TrackDetections {
            participant: "AAAAAAAAAAAAAAAA".into(),
            track: "0".into(),
            rtp_timestamp: 90000,
            capture_time: None,
            width: 2,
            height: 2,
            inference_ms: 1.0,
            detections: vec![],
        };
        let v: Value = serde_json::from_str(&ServerMessage::Detections(det).to_json()).unwrap();
        assert_eq!(v["type"], "detections");
        assert_eq!(v["rtp_timestamp"], 90000);
        assert_eq!(v["participant"], "AAAAAAAAAAAAAAAA");
        let back: ServerMessage =
            serde_json::from_value(json!({"type":"peer-joined","peer":{"id":"AAAAAAAAAAAAAAAA"}})).unwrap();
        assert_eq!(back, ServerMessage::PeerJoined { peer: PeerInfo { id, name: None } });
    }
}
