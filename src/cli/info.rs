//! `factorexe info`: what this build links and what it sees.

use agents::device::{libtorch_has_cuda, DeviceChoice};

/// Arguments of `factorexe info`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Device to resolve and report: auto, cpu or cuda (cuda fails where there is none).
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    println!("factorexe {}", env!("CARGO_PKG_VERSION"));
    println!("tch crate        0.26");
    println!(
        "libtorch (build) {}",
        option_env!("LIBTORCH").unwrap_or("(LIBTORCH was not set at build time)")
    );
    println!("libtorch CUDA    {}", yes_no(libtorch_has_cuda()));
    let cuda = tch::Cuda::is_available();
    println!("CUDA available   {}", yes_no(cuda));
    println!("CUDA devices     {}", tch::Cuda::device_count());
    println!(
        "cuDNN available  {}",
        yes_no(tch::Cuda::cudnn_is_available())
    );
    println!(
        "torch threads    {} (libtorch's default; train, eval, search and bench use --threads, 1 unless set)",
        tch::get_num_threads()
    );
    let device = args.device.resolve()?;
    println!("--device {:<7} {device:?}", args.device.to_string());
    Ok(())
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
