//! Command-line flags (each also an environment variable) with their defaults.

use callsight_vision::args::DetectorArgs;
use clap::Args;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// `--dtls`: see [`ServeArgs::dtls`].
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtlsArg {
    Openssl,
    Dimpl,
}

#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address and port of the web server (HTTP, WebSocket).
    #[arg(long, env = "CALLSIGHT_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// UDP port of the built-in STUN server, on the `--bind` address (0 = any free port).
    #[arg(long, env = "CALLSIGHT_STUN_PORT", default_value_t = 3478)]
    pub stun_port: u16,
    /// STUN replies per second to one source address (IPv6: per /64), so the server cannot
    /// be used to amplify traffic towards an address.
    #[arg(long, env = "CALLSIGHT_STUN_RATE", default_value_t = 10.0)]
    pub stun_rate: f64,
    /// STUN replies one source may get in a burst.
    #[arg(long, env = "CALLSIGHT_STUN_BURST", default_value_t = 20.0)]
    pub stun_burst: f64,
    /// Source addresses the STUN rate limiter tracks at once; when all are busy, new
    /// sources wait for a slot.
    #[arg(long, env = "CALLSIGHT_STUN_MAX_SOURCES", default_value_t = 10_000)]
    pub stun_max_sources: usize,
    /// Don't run the STUN server (e.g. when an external one is configured).
    #[arg(long, env = "CALLSIGHT_NO_STUN")]
    pub no_stun: bool,
    /// TURN server URL handed to joined participants (repeatable), e.g.
    /// turn:turn.example.org:3478. Needs the TURN REST secret (CALLSIGHT_TURN_SECRET or --turn-secret-file).
    #[arg(long = "turn-url", alias = "turn", env = "CALLSIGHT_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Vec<String>,
    /// File holding the secret shared with the TURN server (coturn `static-auth-secret`).
    /// Or set CALLSIGHT_TURN_SECRET. Never on the command line.
    #[arg(long, env = "CALLSIGHT_TURN_SECRET_FILE", requires = "turn_urls")]
    pub turn_secret_file: Option<PathBuf>,
    /// How long an issued TURN credential stays valid (e.g. 3600, 90s, 30m, 1h, 1d).
    #[arg(long, env = "CALLSIGHT_TURN_TTL", default_value = "1h", value_parser = parse_duration)]
    pub turn_ttl: Duration,
    /// Admit only joins that carry a room access token (`callsight token` mints them);
    /// without it, rooms are open to whoever has the link.
    #[arg(long, env = "CALLSIGHT_REQUIRE_TOKEN")]
    pub require_token: bool,
    /// File holding the secret room tokens are signed with; or set CALLSIGHT_TOKEN_SECRET.
    #[arg(long, env = "CALLSIGHT_TOKEN_SECRET_FILE")]
    pub token_secret_file: Option<PathBuf>,
    /// File holding a key that shows `/healthz`'s details to remote callers
    /// (`Authorization: Bearer KEY`); or set CALLSIGHT_HEALTH_KEY. Local callers see them anyway.
    #[arg(long, env = "CALLSIGHT_HEALTH_KEY_FILE")]
    pub health_key_file: Option<PathBuf>,

    /// Participants per room; above 2 the UI tiles a small mesh.
    #[arg(long, env = "CALLSIGHT_ROOM_CAPACITY", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub room_capacity: u16,
    /// Largest signaling message accepted, in bytes.
    #[arg(long, env = "CALLSIGHT_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,
    /// Sustained signaling messages per second per connection.
    #[arg(long, env = "CALLSIGHT_RATE_PER_SEC", default_value_t = 50.0)]
    pub rate_per_sec: f64,
    /// Signaling messages a connection may send in a burst.
    #[arg(long, env = "CALLSIGHT_RATE_BURST", default_value_t = 200.0)]
    pub rate_burst: f64,
    /// Signaling bytes per second a connection may send, sustained. Beyond it the server
    /// stops reading the socket until the budget refills (TCP pushes back on the sender),
    /// so one flooding client costs the others nothing. 0: no limit.
    #[arg(long, env = "CALLSIGHT_MAX_BYTES_PER_SEC", default_value_t = 256 * 1024)]
    pub max_bytes_per_sec: u64,
    /// Signaling bytes a connection may send in a burst before `--max-bytes-per-sec` applies.
    #[arg(long, env = "CALLSIGHT_MAX_BYTES_BURST", default_value_t = 1024 * 1024)]
    pub max_bytes_burst: u64,
    /// Seconds after a participant's connection dropped during which its resume token
    /// gives its id back (after a restart: seconds after the start).
    #[arg(long, env = "CALLSIGHT_RESUME_GRACE", default_value_t = 60.0)]
    pub resume_grace: f64,
    /// Seconds a WebSocket may stay outside any room (after opening or leaving) before it is closed.
    #[arg(long, env = "CALLSIGHT_JOIN_TIMEOUT", default_value_t = 10.0)]
    pub join_timeout: f64,
    /// Directory for the server's persistent secrets (the resume-token key, mode 0600).
    /// Default: $XDG_DATA_HOME/callsight, else ~/.local/share/callsight.
    #[arg(long, env = "CALLSIGHT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Connections held at once, in total (keep it below the process's file-descriptor limit).
    #[arg(long, env = "CALLSIGHT_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Connections held at once per client address (IPv6: per /64); 0 = no cap.
    #[arg(long, env = "CALLSIGHT_MAX_CONNECTIONS_PER_IP", default_value_t = 100)]
    pub max_connections_per_ip: usize,
    /// Proxies (IP or CIDR, repeatable) whose `X-Forwarded-For` names the client address.
    #[arg(long = "trusted-proxy", env = "CALLSIGHT_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Seconds within which a TLS handshake, and each request's headers, must arrive.
    #[arg(long, env = "CALLSIGHT_HEADER_READ_TIMEOUT", default_value_t = 10.0)]
    pub header_read_timeout: f64,
    /// Bytes queued for one WebSocket before it counts as stuck and is dropped.
    #[arg(long, env = "CALLSIGHT_MAX_OUTBOX_BYTES", default_value_t = 1 << 20)]
    pub max_outbox_bytes: usize,
    /// Page origins (scheme://host[:port], repeatable) allowed to open `/ws` besides the
    /// server's own; clients that send no `Origin` (non-browsers) are always allowed.
    #[arg(long = "allowed-origin", env = "CALLSIGHT_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Seconds between WebSocket pings.
    #[arg(long, env = "CALLSIGHT_HEARTBEAT_SECS", default_value_t = 3.0)]
    pub heartbeat_secs: f64,
    /// Seconds of silence (no pong, no message) after which a connection is dropped.
    #[arg(long, env = "CALLSIGHT_HEARTBEAT_TIMEOUT_SECS", default_value_t = 8.0)]
    pub heartbeat_timeout_secs: f64,

    /// Share rooms with other nodes through this Redis server (redis://host:port/db):
    /// membership, capacity and presence live there, messages for participants on
    /// other nodes go through its pub/sub. Without it, rooms live in this process.
    #[arg(long, env = "CALLSIGHT_REDIS_URL")]
    pub redis: Option<String>,
    /// Milliseconds a node's presence in Redis lasts without a refresh (refreshed every
    /// third of it): a node that dies stops holding seats after this long, and the rooms
    /// whose media it ran move to a live node (their media leases last as long).
    #[arg(long, env = "CALLSIGHT_REDIS_PRESENCE_TTL_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(300..))]
    pub redis_presence_ttl_ms: u64,
    /// Milliseconds one Redis command may take before the node counts Redis as down.
    #[arg(long, env = "CALLSIGHT_REDIS_TIMEOUT_MS", default_value_t = 2_000)]
    pub redis_timeout_ms: u64,
    /// Commands (relays, seat requests) waiting for Redis; beyond, relays are dropped
    /// (counted in `/healthz`) and joins refused.
    #[arg(long, env = "CALLSIGHT_REDIS_QUEUE", default_value_t = 10_000)]
    pub redis_queue: usize,
    /// With `--redis`: the base URL at which this node itself is reachable (behind a load
    /// balancer, each node's own address, e.g. https://node-2.example.org). A WHIP or WHEP
    /// request reaching another node for a room whose media runs here is redirected
    /// (307) to it.
    #[arg(long, env = "CALLSIGHT_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,

    /// TLS certificate chain (PEM). Browsers allow cameras only on https or localhost.
    #[arg(long, env = "CALLSIGHT_TLS_CERT", requires = "tls_key", conflicts_with = "tls_self_signed")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "CALLSIGHT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve https with a certificate generated at start (browsers will ask to trust it).
    #[arg(long, env = "CALLSIGHT_TLS_SELF_SIGNED")]
    pub tls_self_signed: bool,
    /// Extra names for the self-signed certificate (besides localhost and the bind address).
    #[arg(long = "tls-name", env = "CALLSIGHT_TLS_NAMES", value_delimiter = ',')]
    pub tls_names: Vec<String>,

    /// Run calls only: no media leg, no detection.
    #[arg(long, env = "CALLSIGHT_NO_MEDIA")]
    pub no_media: bool,
    /// UDP port that all media sessions share, on the `--bind` address (0 = any free port).
    #[arg(long, env = "CALLSIGHT_MEDIA_PORT", default_value_t = 0)]
    pub media_port: u16,
    /// Whose DTLS handshake the media sessions use: `openssl` also takes clients with RSA
    /// certificates (GStreamer before 1.28 publishing over WHIP); `dimpl` (str0m's
    /// default) takes ECDSA ones only (browsers, OBS).
    #[arg(long, env = "CALLSIGHT_DTLS", value_enum, default_value = "openssl")]
    pub dtls: DtlsArg,
    /// Address(es) announced to browsers as media candidates (default: the bind address,
    /// or loopback plus the default-route interface when bound to 0.0.0.0).
    #[arg(long = "media-ip", env = "CALLSIGHT_MEDIA_IPS", value_delimiter = ',')]
    pub media_ips: Vec<IpAddr>,
    /// Detections per second per published track at most.
    #[arg(long, env = "CALLSIGHT_MAX_DETECT_FPS", default_value_t = 15.0)]
    pub max_detect_fps: f32,
    /// Detection worker threads shared by all tracks (0 = what the detector recommends for this machine).
    #[arg(long, env = "CALLSIGHT_DETECT_WORKERS", default_value_t = 0)]
    pub detect_workers: usize,
    /// Lowest score sent to clients (each viewer filters further with its own slider).
    #[arg(long, env = "CALLSIGHT_MIN_SCORE", default_value_t = 0.3)]
    pub min_score: f32,
    /// Send the detector's boxes as they are: no tracker (no `track_id`, velocity or coasting).
    #[arg(long, env = "CALLSIGHT_NO_TRACKING")]
    pub no_tracking: bool,
    /// A tracked object not seen for this long (capture time) is dropped; must exceed
    /// --motion-recheck-ms.
    #[arg(long, env = "CALLSIGHT_TRACK_COAST_MS", default_value_t = callsight_vision::TrackerConfig::default().max_coast_ms)]
    pub track_coast_ms: f64,
    /// Detect every frame the scheduler can take, still or not (no motion gate).
    #[arg(long, env = "CALLSIGHT_NO_MOTION_GATE")]
    pub no_motion_gate: bool,
    /// A still picture is detected again after this long (capture time).
    #[arg(long, env = "CALLSIGHT_MOTION_RECHECK_MS", default_value_t = callsight_vision::MotionConfig::default().recheck_ms)]
    pub motion_recheck_ms: f64,
    /// A decoded frame waiting this long for a detection worker is served before any other.
    #[arg(long, env = "CALLSIGHT_MAX_DETECT_WAIT_MS", default_value_t = 500)]
    pub max_detect_wait_ms: u64,
    /// Publishing sessions at most (each participant publishes one).
    #[arg(long, env = "CALLSIGHT_MAX_MEDIA_SESSIONS", default_value_t = 32)]
    pub max_media_sessions: usize,
    /// Media sessions per room at most (0 = the room capacity).
    #[arg(long, env = "CALLSIGHT_MAX_MEDIA_SESSIONS_PER_ROOM", default_value_t = 0)]
    pub max_media_sessions_per_room: usize,
    /// Media sessions per client address at most (0 = no cap).
    #[arg(long, env = "CALLSIGHT_MAX_MEDIA_SESSIONS_PER_IP", default_value_t = 4)]
    pub max_media_sessions_per_ip: usize,
    /// Kernel receive and send buffer of each media socket, in bytes (capped by the
    /// kernel at net.core.rmem_max / wmem_max; 0 = the system default).
    #[arg(long, env = "CALLSIGHT_UDP_BUFFER_BYTES", default_value_t = callsight_media::MediaConfig::default().udp_buffer_bytes)]
    pub udp_buffer_bytes: usize,
    /// Video tracks (m-lines) accepted per publish; further ones are rejected in the answer.
    #[arg(long, env = "CALLSIGHT_MAX_TRACKS_PER_PUBLISH", default_value_t = 3)]
    pub max_tracks_per_publish: usize,
    /// Keyframe requests (PLI/FIR) sent to a publisher per track at most once per this
    /// many milliseconds: the subscribers' requests are forwarded, and coalesced beyond it.
    #[arg(long, env = "CALLSIGHT_KEYFRAME_INTERVAL_MS", default_value_t = 500)]
    pub keyframe_interval_ms: u64,
    /// A renegotiation offer the server sent a subscribing participant and that is still
    /// unanswered after this many milliseconds is sent again, unchanged (it was lost, or
    /// its answer was).
    #[arg(long, env = "CALLSIGHT_OFFER_TIMEOUT_MS", default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..))]
    pub offer_timeout_ms: u64,
    /// A subscribing participant's downlink is estimated (TWCC feedback of what the
    /// server forwards to it, str0m's send-side BWE) starting from this many kbit/s; the
    /// tightest subscriber's share limits each publisher (REMB). 0 = no estimate (REMB
    /// sent by subscribers still limits publishers).
    #[arg(long, env = "CALLSIGHT_DOWNLINK_BWE_START_KBPS", default_value_t = 2500)]
    pub downlink_bwe_start_kbps: u64,
    /// The least a publisher is asked (REMB) to send per video track, however small its
    /// subscribers' downlinks, in kbit/s.
    #[arg(long, env = "CALLSIGHT_MIN_PUBLISH_KBPS", default_value_t = 150)]
    pub min_publish_kbps: u64,
    /// Of a simulcast track, the detector decodes the smallest layer at least this many
    /// pixels wide (the largest when none is); 0 = the network's input width (416 for the
    /// default model: a 1280×720 camera is detected on its 640×360 layer).
    #[arg(long, env = "CALLSIGHT_SIMULCAST_DETECT_WIDTH", default_value_t = 0)]
    pub simulcast_detect_width: u32,
    /// Largest coded video picture accepted from a publisher, in pixels (checked in each
    /// H.264 SPS before the decoder sees it; default 2560×1440).
    #[arg(long, env = "CALLSIGHT_MAX_VIDEO_PIXELS", default_value_t = callsight_media::sps::DEFAULT_MAX_VIDEO_PIXELS)]
    pub max_video_pixels: u64,
    /// Largest `max_num_ref_frames` accepted in an H.264 SPS.
    #[arg(long, env = "CALLSIGHT_MAX_REF_FRAMES", default_value_t = callsight_media::sps::DEFAULT_MAX_REF_FRAMES)]
    pub max_ref_frames: u32,
    /// Largest decoded picture buffer per video track, in MiB (coded pixels × 1.5 ×
    /// (reference frames + 1)).
    #[arg(long, env = "CALLSIGHT_MAX_DPB_MIB", default_value_t = callsight_media::sps::DEFAULT_MAX_DPB_BYTES >> 20)]
    pub max_dpb_mib: u64,
    #[command(flatten)]
    pub detector: DetectorArgs,
    #[command(flatten)]
    pub whip: crate::whip::WhipArgs,
    #[command(flatten)]
    pub whep: crate::whep::WhepArgs,
}

/// An IP network (`10.0.0.0/8`) or a single address (`127.0.0.1`).
pub(crate) fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is neither an IP address nor a CIDR network"))
}

impl ServeArgs {
    pub fn media_session_caps(&self) -> crate::media_sessions::SessionCaps {
        let per_room = match self.max_media_sessions_per_room {
            0 => usize::from(self.room_capacity),
            n => n,
        };
        crate::media_sessions::SessionCaps { per_room, per_address: self.max_media_sessions_per_ip }
    }

    /// `--redis` and its limits.
    pub fn cluster_config(&self, url: &str) -> crate::cluster::ClusterConfig {
        crate::cluster::ClusterConfig {
            url: url.to_owned(),
            presence_ttl: Duration::from_millis(self.redis_presence_ttl_ms),
            timeout: Duration::from_millis(self.redis_timeout_ms.max(1)),
            queue: self.redis_queue,
            resume_grace: secs(self.resume_grace),
            public_url: self.public_url.clone(),
        }
    }

    pub fn connection_limits(&self) -> crate::connections::ConnectionLimits {
        crate::connections::ConnectionLimits {
            max_connections: self.max_connections,
            max_per_address: self.max_connections_per_ip,
            trusted_proxies: self.trusted_proxies.clone(),
        }
    }

    pub fn limits(&self) -> callsight_signal::Limits {
        callsight_signal::Limits {
            room_capacity: usize::from(self.room_capacity),
            max_message_bytes: self.max_message_bytes,
            rate_per_sec: self.rate_per_sec,
            rate_burst: self.rate_burst,
            resume_grace: secs(self.resume_grace),
            join_timeout: secs(self.join_timeout),
            ..callsight_signal::Limits::default()
        }
    }
}

impl ServeArgs {
    pub fn stun_limits(&self) -> crate::source_limit::SourceLimits {
        crate::source_limit::SourceLimits {
            rate_per_sec: self.stun_rate,
            burst: self.stun_burst,
            max_sources: self.stun_max_sources,
        }
    }

    /// The media leg's configuration from these flags.
    pub fn media_config(&self) -> callsight_media::MediaConfig {
        let defaults = callsight_media::MediaConfig::default();
        callsight_media::MediaConfig {
            udp_bind: SocketAddr::new(self.bind.ip(), self.media_port),
            candidate_ips: self.media_ips.clone(),
            max_detect_fps: self.max_detect_fps,
            workers: self.detect_workers,
            max_sessions: self.max_media_sessions,
            max_tracks_per_publish: self.max_tracks_per_publish,
            udp_buffer_bytes: self.udp_buffer_bytes,
            keyframe_interval: Duration::from_millis(self.keyframe_interval_ms),
            offer_timeout: Duration::from_millis(self.offer_timeout_ms),
            downlink_bwe_start_kbps: self.downlink_bwe_start_kbps,
            min_publish_kbps: self.min_publish_kbps,
            simulcast_detect_width: self.simulcast_detect_width,
            sps_limits: callsight_media::sps::SpsLimits {
                max_video_pixels: self.max_video_pixels,
                max_ref_frames: self.max_ref_frames,
                max_dpb_bytes: self.max_dpb_mib.saturating_mul(1 << 20),
            },
            detect: callsight_vision::DetectOptions { score_threshold: self.min_score, ..defaults.detect.clone() },
            tracking: (!self.no_tracking).then(|| callsight_vision::TrackerConfig {
                max_coast_ms: self.track_coast_ms,
                ..callsight_vision::TrackerConfig::default()
            }),
            motion: (!self.no_motion_gate).then(|| callsight_vision::MotionConfig {
                recheck_ms: self.motion_recheck_ms,
                ..callsight_vision::MotionConfig::default()
            }),
            max_detect_wait: Duration::from_millis(self.max_detect_wait_ms),
            dtls: match self.dtls {
                DtlsArg::Openssl => callsight_media::DtlsStack::OpenSsl,
                DtlsArg::Dimpl => callsight_media::DtlsStack::Dimpl,
            },
            ..defaults
        }
    }
}

/// A duration flag in seconds; negative or not-a-number counts as zero.
pub fn secs(s: f64) -> std::time::Duration {
    std::time::Duration::try_from_secs_f64(s).unwrap_or_default()
}

/// A duration: whole seconds, or a number with unit `s`, `m`, `h` or `d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 3600, 90s, 30m, 1h or 1d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?} in {text:?} (use s, m, h or d)")),
    };
    n.checked_mul(scale).map(Duration::from_secs).ok_or_else(|| format!("{text:?} is too long"))
}

/// `--public-url`: an absolute http(s) URL, kept without its trailing `/`.
fn parse_public_url(s: &str) -> Result<String, String> {
    let uri: axum::http::Uri = s.parse().map_err(|e| format!("not a URL: {e}"))?;
    match (uri.scheme_str(), uri.authority(), uri.query()) {
        (Some("http" | "https"), Some(a), None) if !a.as_str().contains('@') => Ok(s.trim_end_matches('/').to_owned()),
        _ => Err("give an absolute http:// or https:// URL without a query, e.g. https://node-2.example.org".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "h", "1w", "-1s", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn public_urls_are_absolute_http() {
        assert_eq!(parse_public_url("https://node-2.example.org/").as_deref(), Ok("https://node-2.example.org"));
        assert_eq!(parse_public_url("http://10.0.0.2:8080/calls").as_deref(), Ok("http://10.0.0.2:8080/calls"));
        for bad in ["", "node-2.example.org", "/calls", "ftp://x", "https://x/?a=1", "https://u:p@x"] {
            assert!(parse_public_url(bad).is_err(), "{bad}");
        }
    }
}
