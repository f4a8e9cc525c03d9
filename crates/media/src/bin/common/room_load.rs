//! What the room benches (`sfu-load`, `janus-load`) share: their room flags, the encoded
//! streams, and the publishers that send them with each frame's send instant kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use callsight_media::client::Client;
use callsight_media::synth::{encode_loop, load_test_photo, EncodedFrame};

use crate::bench_util::StreamArgs;

/// Rooms to run and the stream every participant publishes.
#[derive(clap::Args, Debug)]
pub struct RoomArgs {
    /// Room sizes to run, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "2,4,8,16")]
    pub rooms: Vec<usize>,
    /// Measured seconds per room (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Warm-up seconds per room (connect, negotiate, first keyframes).
    #[arg(long, default_value_t = 4.0)]
    pub warmup: f64,
    #[command(flatten)]
    pub stream: StreamArgs,
    #[arg(long, default_value_t = 1_000_000)]
    pub bitrate: u32,
    #[arg(long, value_delimiter = ',', default_value = "bus.jpg,zidane.jpg")]
    pub photos: Vec<String>,
}

/// When publisher `i` sent its frame `k`.
pub type Sent = Arc<Mutex<HashMap<(usize, u32), Instant>>>;

/// RTP timestamp base of publisher `i`: far apart, so a received frame names its sender
/// (where the server keeps timestamps).
pub fn base(i: usize) -> u32 {
    (i as u32).wrapping_mul(200_000_000)
}

/// `encode` applied to every photo of `--photos`, in order (at least one).
fn per_photo<T>(args: &RoomArgs, encode: impl Fn(&image::RgbImage) -> Result<T>) -> Result<Vec<T>> {
    if args.photos.is_empty() {
        bail!("no photos given");
    }
    args.photos.iter().map(|name| encode(&load_test_photo(name)?)).collect()
}

/// One encoded loop (two seconds, slight pan) per photo.
pub fn encode_sources(args: &RoomArgs) -> Result<Vec<Arc<Vec<EncodedFrame>>>> {
    let (w, h, fps) = (args.stream.width, args.stream.height, args.stream.fps);
    per_photo(args, |photo| Ok(Arc::new(encode_loop(photo, w, h, (fps * 2.0) as usize, 8.0, args.bitrate)?)))
}

/// What one publisher sends: one stream, or simulcast layers (rid, loop), each layer's
/// frame `k` the same picture at the same RTP timestamp.
#[derive(Clone)]
#[allow(dead_code)] // janus-load publishes single streams only
pub enum Source {
    Single(Arc<Vec<EncodedFrame>>),
    Layers(Vec<(&'static str, Arc<Vec<EncodedFrame>>)>),
}

/// Simulcast layers as a browser sends a 640×480 camera (web/publish.js: two layers at
/// that size): rid `h` at half size, `f` at full size; one pair of loops per photo.
#[allow(dead_code)] // sfu-load's only
pub fn encode_layered_sources(args: &RoomArgs) -> Result<Vec<Source>> {
    let (w, h, n) = (args.stream.width, args.stream.height, (args.stream.fps * 2.0) as usize);
    per_photo(args, |photo| {
        let half = encode_loop(photo, w / 2, h / 2, n, 4.0, args.bitrate / 3)?;
        let full = encode_loop(photo, w, h, n, 8.0, args.bitrate)?;
        Ok(Source::Layers(vec![("h", Arc::new(half)), ("f", Arc::new(full))]))
    })
}

/// Every publisher sends its source (`sources[i % len]`) at `fps` until its task is
/// aborted; the send instant of each frame goes into the returned map.
pub fn start_publishing(
    publishers: &[Arc<Client>],
    sources: &[Source],
    fps: f64,
) -> (Sent, Vec<tokio::task::JoinHandle<()>>) {
    let sent: Sent = Arc::default();
    let period = Duration::from_secs_f64(1.0 / fps);
    let tasks = publishers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (c, frames, sent) = (c.clone(), sources[i % sources.len()].clone(), sent.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                for k in 0u32.. {
                    tick.tick().await;
                    let ts = base(i).wrapping_add(k.wrapping_mul(3000));
                    sent.lock().unwrap().insert((i, k), Instant::now());
                    match &frames {
                        Source::Single(frames) => c.send_video(0, frames[k as usize % frames.len()].data.clone(), ts),
                        Source::Layers(layers) => {
                            for (rid, frames) in layers {
                                c.send_layer(rid, frames[k as usize % frames.len()].data.clone(), ts);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    (sent, tasks)
}

/// The newest frame index publisher 0 has sent.
pub fn last_sent(sent: &Mutex<HashMap<(usize, u32), Instant>>) -> u32 {
    sent.lock().unwrap().keys().filter(|(i, _)| *i == 0).map(|(_, k)| *k).max().unwrap_or(0)
}
