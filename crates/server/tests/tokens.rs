//! `--require-token`: real WebSocket clients join only with a good room token, minted by
//! the real `callsight token` command; missing, expired, foreign-room and forged tokens
//! are refused with their own error codes.

mod common;

use common::*;
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

async fn join_token(ws: &mut Ws, room: &str, token: Option<&str>) -> serde_json::Value {
    send(ws, json!({"type":"join","room":room,"name":"Mallory","token":token})).await;
    recv(ws).await
}

#[tokio::test]
async fn joining_needs_a_good_token_for_the_room() {
    let dir = std::env::temp_dir().join(format!("callsight-tokens-{}", std::process::id()));
    let secret = secret_file(&dir, "secret", "room-token-secret-77");
    let foreign = secret_file(&dir, "foreign", "some-other-secret");
    let addr = start(&["--require-token", "--token-secret-file", secret.to_str().unwrap()]).await;
    let room = "room-token-0001";

    let (token, link) = mint(&secret, room, "ada", &[]);
    assert_eq!(link, format!("https://call.example.org/r/{room}#token={token}"));
    let (other_room, _) = mint(&secret, "room-token-0002", "ada", &[]);
    let (forged, _) = mint(&foreign, room, "ada", &[]);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub":"ada","exp":now - 120,"video":{"room":room,"roomJoin":true}}),
        &jsonwebtoken::EncodingKey::from_secret(b"room-token-secret-77").unwrap(),
    )
    .unwrap();
    let unsigned = {
        let (_, rest) = token.split_once('.').unwrap();
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}", rest.rsplit_once('.').unwrap().0) + "."
    };

    let mut ws = connect(addr).await;
    for (token, code) in [
        (None, "token-required"),
        (Some(expired.as_str()), "token-expired"),
        (Some(other_room.as_str()), "forbidden"),
        (Some(forged.as_str()), "token-invalid"),
        (Some(unsigned.as_str()), "token-invalid"),
        (Some("not-a-jwt"), "token-invalid"),
    ] {
        let reply = join_token(&mut ws, room, token).await;
        assert_eq!(error_code(&reply), code, "{reply}");
        assert!(!reply["message"].as_str().unwrap().is_empty());
    }
    // The same socket, with the good token: in, under the token's identity.
    let joined = join_token(&mut ws, room, Some(&token)).await;
    assert_eq!(joined["type"], "joined", "{joined}");

    let (viewer, _) = mint(&secret, room, "bob", &["--no-publish"]);
    let mut bob = connect(addr).await;
    let jb = join_token(&mut bob, room, Some(&viewer)).await;
    assert_eq!(jb["peers"][0]["name"], "ada", "the token's identity, not the name the client sent: {jb}");
    assert_eq!(recv(&mut ws).await["peer"]["name"], "bob");
    send(&mut bob, json!({"type":"publish","sdp":"v=0"})).await;
    assert_eq!(error_code(&recv(&mut bob).await), "forbidden");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn require_token_without_a_secret_refuses_to_start() {
    let err = start_error(&["--require-token"]).await;
    assert!(err.contains("CALLSIGHT_TOKEN_SECRET"), "{err}");
}
