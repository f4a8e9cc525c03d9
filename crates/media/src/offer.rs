//! Text-level edits of a remote SDP offer before str0m sees it. A leaf module.
//!
//! str0m answers every m-line it can; to refuse some (the video m-lines beyond
//! `max_tracks_per_publish`) they are marked rejected in the offer itself: port 0 and
//! out of the BUNDLE group, which str0m answers with port 0 (RFC 3264 §6).

/// Rejects the video m-lines the participant sends on after the first `max_video`;
/// returns the edited offer and how many were rejected. M-lines it only receives on (the
/// server's forwarded tracks, in a renegotiation) are not counted.
pub(crate) fn limit_video_lines(offer: &str, max_video: usize) -> (String, usize) {
    let eol = if offer.contains("\r\n") { "\r\n" } else { "\n" };
    // Sections: the session part, then one per m-line.
    let mut sections: Vec<Vec<&str>> = vec![Vec::new()];
    for line in offer.lines() {
        if line.starts_with("m=") {
            sections.push(Vec::new());
        }
        if let Some(s) = sections.last_mut() {
            s.push(line);
        }
    }
    let mut video_seen = 0usize;
    let mut rejected = 0usize;
    let mut rejected_mids: Vec<String> = Vec::new();
    let mut out: Vec<String> = Vec::with_capacity(offer.len() / 16);
    for (i, section) in sections.iter().enumerate() {
        let reject = i > 0 && {
            let fields: Vec<&str> = section[0].trim_start_matches("m=").split(' ').collect();
            let sending = !section.iter().any(|l| *l == "a=recvonly" || *l == "a=inactive");
            let counted = fields.first() == Some(&"video") && fields.get(1).is_some_and(|p| *p != "0") && sending;
            video_seen += usize::from(counted);
            counted && video_seen > max_video && fields.len() > 1
        };
        rejected += usize::from(reject);
        for (n, line) in section.iter().enumerate() {
            if !reject {
                out.push((*line).to_owned());
            } else if n == 0 {
                let mut fields: Vec<&str> = line.split(' ').collect();
                fields[1] = "0";
                out.push(fields.join(" "));
            } else if *line != "a=bundle-only" {
                // A rejected m-line is not bundled with anything.
                if let Some(mid) = line.strip_prefix("a=mid:") {
                    rejected_mids.push(mid.trim().to_owned());
                }
                out.push((*line).to_owned());
            }
        }
    }
    if rejected == 0 {
        return (offer.to_owned(), 0);
    }
    for line in out.iter_mut() {
        if let Some(rest) = line.strip_prefix("a=group:BUNDLE") {
            let kept: Vec<&str> = rest.split_whitespace().filter(|m| !rejected_mids.iter().any(|r| r == m)).collect();
            *line = format!("a=group:BUNDLE {}", kept.join(" "));
        }
    }
    let mut s = out.join(eol);
    s.push_str(eol);
    (s, rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=rtpmap:96 H264/90000\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=rtpmap:96 H264/90000\r\n";

    #[test]
    fn video_lines_beyond_the_cap_get_port_zero_and_leave_the_bundle() {
        let (s, n) = limit_video_lines(OFFER, 1);
        assert_eq!(n, 1);
        assert!(s.contains("a=group:BUNDLE 0 1\r\n"), "{s}");
        assert!(s.contains("m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0"), "{s}");
        assert!(s.contains("m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:2"), "{s}");
        assert!(s.contains("m=audio 9 "), "audio untouched: {s}");
        assert_eq!(limit_video_lines(OFFER, 2), (OFFER.to_owned(), 0));
        assert_eq!(limit_video_lines("garbage", 0), ("garbage".to_owned(), 0));
        // Lines the participant only receives on (forwarded tracks) do not count.
        let receiving = OFFER.replacen("a=mid:0\r\n", "a=mid:0\r\na=recvonly\r\n", 1);
        assert_eq!(limit_video_lines(&receiving, 1), (receiving.clone(), 0));
    }
}
