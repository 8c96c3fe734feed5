//! Choosing the libtorch device from a user's `--device` flag.

use std::fmt;
use std::str::FromStr;
use tch::Device;

/// The device a user asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA device 0 when libtorch sees one, else the CPU.
    #[default]
    Auto,
    /// Always the CPU.
    Cpu,
    /// CUDA device 0; an error when none is available.
    Cuda,
}

/// A device that was asked for but is not there.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// `--device cuda` on a machine where libtorch sees no GPU.
    #[error(
        "--device cuda was requested but libtorch sees no CUDA device \
         (libtorch has CUDA support: {cuda_built}); use --device cpu or --device auto"
    )]
    CudaUnavailable {
        /// Whether the linked libtorch was built with CUDA at all.
        cuda_built: bool,
    },
    /// The flag's value is not one of auto, cpu, cuda.
    #[error("unknown device `{0}`: expected one of auto, cpu, cuda")]
    Unknown(String),
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            other => Err(DeviceError::Unknown(other.to_string())),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
        })
    }
}

impl DeviceChoice {
    /// The concrete device, or an error naming why CUDA cannot be used.
    pub fn resolve(self) -> Result<Device, DeviceError> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            DeviceChoice::Cuda => Err(DeviceError::CudaUnavailable {
                cuda_built: libtorch_has_cuda(),
            }),
        }
    }
}

/// Whether the linked libtorch was built with CUDA (the PyPI wheel is), whether or not a GPU
/// is present: libtorch reports CUDA support only when a driver loads, so the build-time
/// library folder is checked too.
pub fn libtorch_has_cuda() -> bool {
    let built_with_cuda_lib = option_env!("LIBTORCH")
        .map(|dir| {
            std::path::Path::new(dir)
                .join("lib/libtorch_cuda.so")
                .exists()
        })
        .unwrap_or(false);
    built_with_cuda_lib || tch::utils::has_cuda()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_choices_and_rejects_others() {
        assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("cuda".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda);
        let err = "gpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(
            err.contains("gpu") && err.contains("auto, cpu, cuda"),
            "{err}"
        );
    }

    #[test]
    fn cpu_always_resolves_and_cuda_matches_availability() {
        assert_eq!(DeviceChoice::Cpu.resolve().unwrap(), Device::Cpu);
        let cuda = DeviceChoice::Cuda.resolve();
        assert_eq!(cuda.is_ok(), tch::Cuda::is_available());
        if let Err(e) = cuda {
            assert!(e.to_string().contains("no CUDA device"), "{e}");
        }
        let auto = DeviceChoice::Auto.resolve().unwrap();
        assert_eq!(auto.is_cuda(), tch::Cuda::is_available());
    }
}
