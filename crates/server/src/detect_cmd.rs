//! `callsight detect` (filled in by the vision work).

#[derive(clap::Args, Clone, Debug)]
pub struct DetectArgs {
    /// Image files (jpg, png), y4m videos or directories.
    pub inputs: Vec<std::path::PathBuf>,
}

pub fn run(_args: DetectArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("detection is not built yet")
}
