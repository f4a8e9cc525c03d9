//! `application/trickle-ice-sdpfrag` bodies (RFC 8840 §9), as a WHIP client's `PATCH`
//! carries them (RFC 9725 §4.3): ICE credentials and candidates, nothing else that
//! matters here (`m=`/`a=mid` name the bundle's first m-line; other lines are ignored).
//! Sans-IO: text in, [`SdpFrag`] out; and the two SDP edits an ICE restart needs.

use thiserror::Error;

/// What a fragment says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SdpFrag {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    /// Each `a=candidate:` line's value (`candidate:…`, without `a=`).
    pub candidates: Vec<String>,
    pub end_of_candidates: bool,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FragError {
    #[error("line {0} is not an SDP line (x=value)")]
    NotSdp(usize),
    #[error("a=ice-ufrag must be 4 to 256 ice-chars (letters, digits, '+', '/')")]
    BadUfrag,
    #[error("a=ice-pwd must be 22 to 256 ice-chars (letters, digits, '+', '/')")]
    BadPwd,
    #[error("{0} given twice")]
    Twice(&'static str),
}

/// Parses a fragment (lines end in CRLF or LF; a blank last line is allowed).
pub fn parse(text: &str) -> Result<SdpFrag, FragError> {
    let mut frag = SdpFrag::default();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let b = line.as_bytes();
        if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
            return Err(FragError::NotSdp(i + 1));
        }
        let Some(attr) = line.strip_prefix("a=") else { continue };
        if let Some(u) = attr.strip_prefix("ice-ufrag:") {
            if !ice_chars(u, 4) {
                return Err(FragError::BadUfrag);
            }
            if frag.ufrag.replace(u.to_owned()).is_some() {
                return Err(FragError::Twice("a=ice-ufrag"));
            }
        } else if let Some(p) = attr.strip_prefix("ice-pwd:") {
            if !ice_chars(p, 22) {
                return Err(FragError::BadPwd);
            }
            if frag.pwd.replace(p.to_owned()).is_some() {
                return Err(FragError::Twice("a=ice-pwd"));
            }
        } else if attr.starts_with("candidate:") {
            frag.candidates.push(attr.to_owned());
        } else if attr == "end-of-candidates" {
            frag.end_of_candidates = true;
        }
    }
    Ok(frag)
}

/// RFC 8839 ice-char: ALPHA / DIGIT / "+" / "/", `min`..=256 of them.
fn ice_chars(s: &str, min: usize) -> bool {
    (min..=256).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

/// `sdp` with other ICE credentials (on every m-line) and other candidates (on the first
/// m-line, the bundle's) instead of its own. The server restarts ICE with the session's
/// offer made so: a renegotiation that changes nothing else (RFC 9725 §4.3.2); a client
/// applies the server's fragment to its answer so.
pub fn with_ice(sdp: &str, ufrag: &str, pwd: &str, candidates: &[String]) -> String {
    let mut out = String::with_capacity(sdp.len() + 128 * candidates.len());
    let mut m_lines = 0usize;
    for line in sdp.lines() {
        if line.starts_with("m=") {
            m_lines += 1;
        }
        if line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
            continue;
        }
        if line.starts_with("a=ice-ufrag:") {
            out.push_str(&format!("a=ice-ufrag:{ufrag}\r\n"));
        } else if line.starts_with("a=ice-pwd:") {
            out.push_str(&format!("a=ice-pwd:{pwd}\r\n"));
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
        if line.starts_with("a=mid:") && m_lines == 1 {
            for c in candidates {
                out.push_str(&format!("a={c}\r\n"));
            }
        }
    }
    out
}

/// The fragment of `sdp`: its ICE credentials and the candidates of its first m-line (the
/// bundle's), with `ice-lite`/`ice-options` as it has them. The server answers an ICE
/// restart with the fragment of its answer to [`with_ice`]; a client makes its `PATCH` so.
pub fn frag_of(sdp: &str) -> String {
    let first = |prefix: &str| sdp.lines().find(|l| l.starts_with(prefix));
    let mut out = String::new();
    let session_level = ["a=ice-lite", "a=ice-options:", "a=ice-ufrag:", "a=ice-pwd:"];
    for line in session_level.iter().filter_map(|p| first(p)) {
        out.push_str(line);
        out.push_str("\r\n");
    }
    // The first m-section: its m-line, mid and candidates.
    let section: Vec<&str> = sdp
        .lines()
        .skip_while(|l| !l.starts_with("m="))
        .enumerate()
        .take_while(|(i, l)| *i == 0 || !l.starts_with("m="))
        .map(|(_, l)| l)
        .collect();
    let mid = section.iter().find(|l| l.starts_with("a=mid:"));
    if let (Some(m), Some(mid)) = (section.first(), mid) {
        for line in [*m, *mid].into_iter().chain(section.iter().copied().filter(|l| l.starts_with("a=candidate:"))) {
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str("a=end-of-candidates\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PWD: &str = "P2uYro0UCOQ4zxjKXaWCBui1";

    #[test]
    fn a_trickle_fragment_parses() {
        let text = format!(
            "a=ice-ufrag:EsAw\r\na=ice-pwd:{PWD}\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n\
             a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw\r\n\
             a=candidate:473322822 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active\r\n\
             a=end-of-candidates\r\n"
        );
        let f = parse(&text).unwrap();
        assert_eq!(f.ufrag.as_deref(), Some("EsAw"));
        assert_eq!(f.pwd.as_deref(), Some(PWD));
        assert_eq!(f.candidates.len(), 2);
        assert!(f.candidates[0].starts_with("candidate:1387637174 1 udp"));
        assert!(f.end_of_candidates);
        assert_eq!(parse("\n").unwrap(), SdpFrag::default());
    }

    #[test]
    fn broken_fragments_are_refused() {
        assert_eq!(parse("hello\r\n"), Err(FragError::NotSdp(1)));
        assert_eq!(parse("a=ice-ufrag:EsAw\r\nX=1\r\n"), Err(FragError::NotSdp(2)));
        assert_eq!(parse("a=ice-ufrag:abc\r\n"), Err(FragError::BadUfrag));
        assert_eq!(parse("a=ice-ufrag:ab cd\r\n"), Err(FragError::BadUfrag));
        assert_eq!(parse("a=ice-pwd:short\r\n"), Err(FragError::BadPwd));
        assert_eq!(parse("a=ice-ufrag:EsAw\r\na=ice-ufrag:EsAx\r\n"), Err(FragError::Twice("a=ice-ufrag")));
    }

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:oldU\r\na=ice-pwd:oldpasswordoldpassword1\r\na=mid:0\r\n\
a=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host\r\na=end-of-candidates\r\na=rtpmap:96 H264/90000\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:oldU\r\na=ice-pwd:oldpasswordoldpassword1\r\na=mid:1\r\na=rtpmap:111 opus/48000/2\r\n";

    #[test]
    fn with_ice_swaps_credentials_and_candidates() {
        let cands = vec!["candidate:2 1 udp 2130706431 10.0.0.2 6000 typ host".to_owned()];
        let o = with_ice(OFFER, "newU", PWD, &cands);
        assert!(!o.contains("oldU") && !o.contains("oldpassword") && !o.contains("10.0.0.1"), "{o}");
        assert_eq!(o.matches("a=ice-ufrag:newU\r\n").count(), 2);
        assert_eq!(o.matches(&format!("a=ice-pwd:{PWD}\r\n")).count(), 2);
        // The new candidate on the first m-line only, right after its mid.
        assert!(o.contains("a=mid:0\r\na=candidate:2 1 udp 2130706431 10.0.0.2 6000 typ host\r\n"), "{o}");
        assert_eq!(o.matches("a=candidate:").count(), 1);
        assert!(o.contains("a=rtpmap:96 H264/90000\r\n") && o.contains("a=mid:1\r\n"));
    }

    #[test]
    fn the_fragment_has_the_credentials_and_first_candidates() {
        let answer = OFFER.replace("oldU", "srvU").replace("oldpasswordoldpassword1", "serverpasswordserverpw1");
        let f = frag_of(&answer);
        assert_eq!(
            f,
            "a=ice-ufrag:srvU\r\na=ice-pwd:serverpasswordserverpw1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n\
a=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host\r\na=end-of-candidates\r\n"
        );
        let parsed = parse(&f).unwrap();
        assert_eq!(parsed.ufrag.as_deref(), Some("srvU"));
        assert_eq!(parsed.candidates.len(), 1);
    }
}
