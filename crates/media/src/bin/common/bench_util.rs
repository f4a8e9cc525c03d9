//! Flags shared by the media benches (`media-load`, `sfu-load`); their measuring helpers
//! (percentiles, CPU, RSS) are `callsight_measure`'s.

/// The synthetic stream every publisher sends.
#[derive(clap::Args, Debug)]
pub struct StreamArgs {
    /// Sender frame rate.
    #[arg(long, default_value_t = 30.0)]
    pub fps: f64,
    #[arg(long, default_value_t = 640)]
    pub width: u32,
    #[arg(long, default_value_t = 480)]
    pub height: u32,
}
