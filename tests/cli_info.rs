//! `factorexe info` runs from any directory and reports libtorch and the device.

use std::process::Command;

fn factorexe(args: &[&str]) -> std::process::Output {
    let dir = std::env::temp_dir();
    Command::new(env!("CARGO_BIN_EXE_factorexe"))
        .args(args)
        .current_dir(dir)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("the factorexe binary runs")
}

#[test]
fn info_runs_outside_the_repo_without_ld_library_path() {
    let out = factorexe(&["info"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("libtorch (build)"), "{stdout}");
    assert!(stdout.contains("torch threads"), "{stdout}");
    assert!(stdout.contains("--device auto"), "{stdout}");
}

#[test]
fn device_cuda_fails_clearly_without_a_gpu_and_cpu_always_works() {
    let cpu = factorexe(&["info", "--device", "cpu"]);
    assert!(cpu.status.success());
    assert!(String::from_utf8_lossy(&cpu.stdout).contains("Cpu"));

    let cuda = factorexe(&["info", "--device", "cuda"]);
    let has_gpu = tch::Cuda::is_available();
    assert_eq!(cuda.status.success(), has_gpu);
    if !has_gpu {
        let stderr = String::from_utf8_lossy(&cuda.stderr);
        assert!(stderr.contains("no CUDA device"), "{stderr}");
        assert!(stderr.contains("--device cpu"), "{stderr}");
    }
}

#[test]
fn an_unknown_device_is_rejected_with_the_allowed_values() {
    let out = factorexe(&["info", "--device", "tpu"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auto, cpu, cuda"), "{stderr}");
}

/// `factorexe info | head -1` and the like: when the reader is gone the command ends
/// quietly, without a panic message. Here the reader closes the pipe before the first line
/// is written, so every write meets a closed pipe.
#[test]
fn a_closed_pipe_ends_a_listing_quietly() {
    use std::process::{Command, Stdio};
    for args in [
        &["envs", "list"][..],
        &["search", "list"][..],
        &["info"][..],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_factorexe"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("factorexe runs");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("factorexe ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {stderr}");
    }
}
