//! Text-level reading and edits of SDP before str0m sees it. A leaf module.
//!
//! str0m answers every m-line it can; to refuse some (the video m-lines beyond
//! `max_tracks_per_publish`) they are marked rejected in the offer itself: port 0 and
//! out of the BUNDLE group, which str0m answers with port 0 (RFC 3264 §6).
//! [`MLine`]s name an offer's m-lines, so an answer can be checked to belong to it.

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

/// One m-line of an SDP, as far as matching an answer to its offer needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MLine {
    pub mid: Option<String>,
    /// Port 0: rejected or stopped.
    pub rejected: bool,
}

/// The m-lines of `sdp`, in order.
pub(crate) fn mlines(sdp: &str) -> Vec<MLine> {
    let mut out: Vec<MLine> = Vec::new();
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            out.push(MLine { mid: None, rejected: m.split(' ').nth(1) == Some("0") });
        } else if let (Some(mid), Some(last)) = (line.strip_prefix("a=mid:"), out.last_mut()) {
            last.mid = Some(mid.trim().to_owned());
        }
    }
    out
}

/// True when an answer with the m-lines `answer` can answer an offer with `offer`'s: as
/// many, rejected alike (RFC 3264 §6), the same mids where the answer names one.
pub(crate) fn answers(offer: &[MLine], answer: &[MLine]) -> bool {
    offer.len() == answer.len()
        && offer
            .iter()
            .zip(answer)
            .all(|(o, a)| o.rejected == a.rejected && (a.mid.is_none() || o.mid.is_none() || a.mid == o.mid))
}

/// The m-lines (mid, or index when it has none) on which the offerer would send media:
/// audio or video, not rejected, neither `recvonly` nor `inactive` (no direction
/// attribute means `sendrecv`).
pub(crate) fn sending_lines(offer: &str) -> Vec<String> {
    /// (audio or video and not rejected, sends, mid) of the m-line being read.
    type Line = Option<(bool, bool, Option<String>)>;
    fn close(c: Line, index: usize, out: &mut Vec<String>) {
        if let Some((true, true, mid)) = c {
            out.push(mid.unwrap_or_else(|| format!("#{index}")));
        }
    }
    let mut out = Vec::new();
    let mut current: Line = None;
    let mut index = 0usize;
    for line in offer.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            close(current.take(), index, &mut out);
            index += 1;
            let mut fields = m.split(' ');
            let media = matches!(fields.next(), Some("audio" | "video"));
            let open = fields.next().is_some_and(|port| port != "0");
            current = Some((media && open, true, None));
        } else if let Some((_, sends, mid)) = current.as_mut() {
            match line.trim_end() {
                "a=recvonly" | "a=inactive" => *sends = false,
                l => {
                    if let Some(m) = l.strip_prefix("a=mid:") {
                        *mid = Some(m.trim().to_owned());
                    }
                }
            }
        }
    }
    close(current, index, &mut out);
    out
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

    #[test]
    fn an_answer_matches_its_offer_by_mlines() {
        let offer = mlines(OFFER);
        let mid = |m: &str| Some(m.to_owned());
        assert_eq!(
            offer,
            vec![
                MLine { mid: mid("0"), rejected: false },
                MLine { mid: mid("1"), rejected: false },
                MLine { mid: mid("2"), rejected: false }
            ]
        );
        assert!(answers(&offer, &offer));
        let (limited, _) = limit_video_lines(OFFER, 1);
        let limited = mlines(&limited);
        assert!(!answers(&offer, &limited), "a line rejected in one only");
        assert!(!answers(&offer, &offer[..2]), "fewer lines");
        let mut renamed = offer.clone();
        renamed[1].mid = mid("9");
        assert!(!answers(&offer, &renamed), "another mid");
        renamed[1].mid = None;
        assert!(answers(&offer, &renamed), "an answer line without a mid");
        assert!(mlines("garbage").is_empty());
    }

    #[test]
    fn sending_lines_are_the_open_media_lines_without_recvonly_or_inactive() {
        assert_eq!(sending_lines(OFFER), vec!["0", "1", "2"]);
        let quiet = OFFER
            .replacen("a=mid:0\r\n", "a=mid:0\r\na=recvonly\r\n", 1)
            .replacen("a=mid:1\r\n", "a=mid:1\r\na=inactive\r\n", 1)
            .replacen("m=video 9", "m=video 0", 2);
        assert!(sending_lines(&quiet).is_empty(), "{quiet}");
        let app = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n";
        assert!(sending_lines(app).is_empty(), "a data channel sends no media");
        assert_eq!(sending_lines("v=0\nm=audio 9 RTP/AVP 0\na=sendonly\n"), vec!["#1"]);
        assert!(sending_lines("garbage").is_empty());
    }
}
