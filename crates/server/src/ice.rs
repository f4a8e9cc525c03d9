//! The `RTCIceServer` list a browser gets: our STUN server under the name the browser
//! used to reach us (so it works for `localhost`, a LAN address or a DNS name alike),
//! plus TURN with credentials issued to one joined participant.

use crate::turn::TurnRest;
use callsight_signal::IceServer;
use std::time::SystemTime;

#[derive(Clone, Debug, Default)]
pub struct IceServers {
    /// Our STUN server's UDP port, if it runs.
    pub stun_port: Option<u16>,
    /// `--turn-url`s, with the shared secret their credentials are made from.
    pub turn: Option<(Vec<String>, TurnRest)>,
}

impl IceServers {
    /// The public part: STUN only. Anyone may ask for it (`/api/config`).
    pub fn public(&self, host: Option<&str>) -> Vec<IceServer> {
        let stun = self.stun_port.zip(host).map(|(port, host)| IceServer {
            urls: vec![format!("stun:{host}:{port}")],
            username: None,
            credential: None,
        });
        stun.into_iter().collect()
    }

    /// STUN plus TURN credentials for `participant` (in its `joined` only).
    pub fn for_participant(&self, participant: &str, host: Option<&str>, now: SystemTime) -> Vec<IceServer> {
        let mut list = self.public(host);
        if let Some((urls, rest)) = &self.turn {
            let credential = rest.issue(participant, now);
            list.push(IceServer {
                urls: urls.clone(),
                username: Some(credential.username),
                credential: Some(credential.password),
            });
        }
        list
    }
}
