//! Identity on the real server: ids come back only with their resume token, tokens
//! survive a restart through the state directory, display names cannot impersonate.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn a_dropped_id_comes_back_only_with_its_token() {
    let addr = start(&["--resume-grace", "60"]).await;
    let (mut a, mut b) = (connect(addr).await, connect(addr).await);
    let ja = join(&mut a, "room-ident-1").await;
    let a_id = ja["id"].as_str().unwrap().to_owned();
    let a_token = ja["resume_token"].as_str().expect("joined carries resume_token").to_owned();
    assert!(a_token.len() >= 22, "≥ 128 bits: {a_token}");
    let jb = join(&mut b, "room-ident-1").await;
    assert!(!jb.to_string().contains(&a_token), "b never sees a's token");
    let pj = recv(&mut a).await;
    assert_eq!(pj["type"], "peer-joined");
    assert!(pj.get("resume_token").is_none() && pj["peer"].get("resume_token").is_none(), "{pj}");

    // a's socket drops; b, who knows a's id, tries to take it.
    drop(a);
    assert_eq!(recv(&mut b).await, json!({"type":"peer-left","id":a_id}));
    send(&mut b, json!({"type":"leave"})).await;
    for token in [json!(null), json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), json!(jb["resume_token"])] {
        let j =
            join_with(&mut b, json!({"type":"join","room":"room-ident-1","resume":a_id,"resume_token":token})).await;
        assert_ne!(j["id"], a_id.as_str(), "resume with token {token} must not hand over a's id");
        send(&mut b, json!({"type":"leave"})).await;
    }
    // a comes back with its token: same id.
    let mut a2 = connect(addr).await;
    let j = join_with(&mut a2, json!({"type":"join","room":"room-ident-1","resume":a_id,"resume_token":a_token})).await;
    assert_eq!(j["id"], a_id.as_str());
}

#[tokio::test]
async fn tokens_survive_a_restart_with_the_same_state_dir_only() {
    let dir = std::env::temp_dir().join(format!("callsight-restart-{}", std::process::id()));
    let dir = dir.display().to_string();
    let first = start(&["--state-dir", &dir]).await;
    let mut a = connect(first).await;
    let ja = join(&mut a, "room-ident-2").await;
    let (a_id, a_token) = (ja["id"].clone(), ja["resume_token"].clone());
    drop(a);
    // A second process with the same key file stands for the restarted server.
    let second = start(&["--state-dir", &dir]).await;
    let mut a2 = connect(second).await;
    let j = join_with(&mut a2, json!({"type":"join","room":"room-ident-2","resume":a_id,"resume_token":a_token})).await;
    assert_eq!(j["id"], a_id, "resumed after the restart");
    // A server with another key refuses the token.
    let other_dir = format!("{dir}-other");
    let other = start(&["--state-dir", &other_dir]).await;
    let mut a3 = connect(other).await;
    let j = join_with(&mut a3, json!({"type":"join","room":"room-ident-2","resume":a_id,"resume_token":a_token})).await;
    assert_ne!(j["id"], a_id);
    let key = std::path::Path::new(&dir).join("resume.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other_dir);
}

#[tokio::test]
async fn display_names_cannot_hide_or_reorder_characters() {
    let addr = start(&[]).await;
    let (mut a, mut b) = (connect(addr).await, connect(addr).await);
    join(&mut a, "room-ident-3").await;
    // "Alice" written as "Al" + RIGHT-TO-LEFT OVERRIDE + "ecil", with zero-width space and BOM.
    join_with(&mut b, json!({"type":"join","room":"room-ident-3","name":"\u{FEFF}Al\u{202E}ec\u{200B}il\u{2066}"}))
        .await;
    let pj = recv(&mut a).await;
    assert_eq!(pj["peer"]["name"], "Alecil", "{pj}");
}
