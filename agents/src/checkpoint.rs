//! Checkpoints: named tensors in safetensors plus a JSON sidecar (step, config, RNG state),
//! written atomically, pruned to the last few, loaded with clear errors.
//!
//! # Layout
//!
//! ```text
//! runs/<name>/checkpoints/
//!   step-0000001000.safetensors   the tensors (model, optimizer state), from the CPU
//!   step-0000001000.json          Sidecar: format version, step, config TOML, RNG state,
//!                                 caller's extra JSON, size + CRC32 of the .safetensors
//! ```
//!
//! A checkpoint exists exactly when its `.json` exists. Each file is written to a hidden
//! temporary in the same directory, fsynced and renamed into place, tensors first, sidecar
//! last, then the directory is fsynced. A process killed at any point therefore leaves
//! either the new checkpoint complete or no new sidecar, and the previous checkpoints are
//! untouched (pruning of old ones happens only after the new one is in place). Leftover
//! temporaries and tensor files without a sidecar are removed by the next [`save`], as are
//! checkpoints with a higher step than the one being saved (see [`save`]).
//!
//! # Tensor names
//!
//! Callers namespace tensors with a prefix: `model/<VarStore name>` for the parameters
//! ([`var_store_tensors`], [`copy_into`]) and `optim/<name>` for optimizer state (the AdamW
//! of `crate::optim` keeps its moments as named tensors for this purpose).
//!
//! # What `--resume` carries over
//!
//! Carried over, when the caller saves them: model parameters; optimizer state given as
//! tensors (moments, step counter); the global step; the resolved config; the caller's RNG
//! state as `u64` words (e.g. the sampling and environment RNGs, or seed + counter); anything
//! else in `extra` (the Runner keeps there the curriculum, the training scalars averaged
//! since the last log point and the training time so far).
//!
//! Not carried over, by construction:
//! - libtorch's global generator (dropout masks, `multinomial`): tch exposes no way to read
//!   its state. Reseed it on resume from values in the checkpoint (e.g. `seed ^ step`), so a
//!   resumed run is deterministic, though not bit-identical to an uninterrupted one.
//! - Work in flight between updates: partially collected episodes of the vectorized env,
//!   partially accumulated gradients. Save at update boundaries only.
//! - Metrics logged after the checkpoint's step by the killed process: dropped on resume by
//!   `crate::logging::Logger::resume_after` (those of the checkpoint's step are kept: the
//!   Runner syncs the logs before it saves).
//! - Throughput counters (examples/s restarts from the resume point).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Version of the sidecar format; bumped on incompatible changes.
pub const FORMAT_VERSION: u32 = 1;
/// How many checkpoints [`save`] keeps when the caller has no preference.
pub const DEFAULT_KEEP_LAST: usize = 3;
/// Name of the checkpoint folder inside a run directory.
pub const CHECKPOINT_DIR: &str = "checkpoints";

/// The metadata saved with the tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Global training step at which the checkpoint was taken.
    pub step: u64,
    /// The resolved config of the run, as TOML text.
    pub config_toml: String,
    /// The caller's RNG state (e.g. xoshiro words, or `[seed, draws]`).
    pub rng_state: Vec<u64>,
    /// Anything else the caller needs to continue (curriculum state, counters, ...).
    pub extra: serde_json::Value,
}

/// Name, shape and dtype of one saved tensor, as listed in the sidecar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorInfo {
    /// Tensor name, with its prefix.
    pub name: String,
    /// Shape.
    pub shape: Vec<i64>,
    /// dtype, as tch's `Kind` debug name (`Float`, `Int64`, ...).
    pub dtype: String,
}

/// The `.json` file next to each `.safetensors` file.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Sidecar {
    format_version: u32,
    #[serde(flatten)]
    checkpoint: Checkpoint,
    tensors_file: String,
    tensors_bytes: u64,
    tensors_crc32: u32,
    tensors: Vec<TensorInfo>,
}

/// One checkpoint found in a run directory.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointEntry {
    /// Its step.
    pub step: u64,
    /// Path of its sidecar (`.json`); pass it to [`load`].
    pub path: PathBuf,
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Loaded {
    /// The metadata.
    pub checkpoint: Checkpoint,
    /// All tensors, on the CPU, sorted by name.
    pub tensors: Vec<(String, Tensor)>,
    /// The sidecar it was read from.
    pub path: PathBuf,
}

/// One way in which a checkpoint's tensors differ from the tensors they are loaded into.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorDiff {
    /// The model has this tensor, the checkpoint does not.
    Missing {
        /// Name without prefix.
        name: String,
        /// Shape in the model.
        shape: Vec<i64>,
    },
    /// The checkpoint has this tensor, the model does not.
    Unexpected {
        /// Name without prefix.
        name: String,
        /// Shape in the checkpoint.
        shape: Vec<i64>,
    },
    /// Both have it, with different shapes.
    Shape {
        /// Name without prefix.
        name: String,
        /// Shape in the model.
        model: Vec<i64>,
        /// Shape in the checkpoint.
        checkpoint: Vec<i64>,
    },
    /// Both have it, with different dtypes (no silent casts).
    Dtype {
        /// Name without prefix.
        name: String,
        /// dtype in the model.
        model: Kind,
        /// dtype in the checkpoint.
        checkpoint: Kind,
    },
}

impl fmt::Display for TensorDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorDiff::Missing { name, shape } => {
                write!(f, "missing from the checkpoint: {name} {shape:?}")
            }
            TensorDiff::Unexpected { name, shape } => {
                write!(f, "not in the model: {name} {shape:?}")
            }
            TensorDiff::Shape {
                name,
                model,
                checkpoint,
            } => write!(
                f,
                "shape of {name}: model {model:?}, checkpoint {checkpoint:?}"
            ),
            TensorDiff::Dtype {
                name,
                model,
                checkpoint,
            } => write!(
                f,
                "dtype of {name}: model {model:?}, checkpoint {checkpoint:?}"
            ),
        }
    }
}

/// The list of differences, one per line, for [`CheckpointError::Mismatch`].
#[derive(Clone, Debug, PartialEq)]
pub struct TensorDiffs(pub Vec<TensorDiff>);

impl fmt::Display for TensorDiffs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

/// Errors of the checkpoint module. Every variant names the file or tensors concerned.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// No checkpoint in the run directory.
    #[error("no checkpoint in {dir} (a checkpoint is a step-<n>.json with its .safetensors)")]
    NoCheckpoint {
        /// The checkpoint folder searched.
        dir: PathBuf,
    },
    /// A file exists but its content is damaged (truncated, bit flips, bad JSON).
    #[error("corrupt checkpoint file {path}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The sidecar was written by an incompatible version of this code.
    #[error("{path}: checkpoint format version {found}, this build reads version {expected}")]
    Version {
        /// The sidecar.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version this build writes and reads.
        expected: u32,
    },
    /// The tensors do not match the model or optimizer they are loaded into.
    #[error("checkpoint {source_name} does not match ({} difference(s) under prefix {prefix:?}):{diffs}", diffs.0.len())]
    Mismatch {
        /// Where the tensors came from (a sidecar path, or "tensors" when unknown).
        source_name: String,
        /// The prefix that was being loaded.
        prefix: String,
        /// Every difference found.
        diffs: TensorDiffs,
    },
    /// A tensor cannot be saved (unsupported dtype, duplicate name) or libtorch failed.
    #[error("tensor {name}: {reason}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// A config given for comparison is not valid TOML.
    #[error("config TOML ({which}): {reason}")]
    Config {
        /// Which of the two configs.
        which: &'static str,
        /// The parse error.
        reason: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `run_dir/checkpoints`.
pub fn checkpoint_dir(run_dir: &Path) -> PathBuf {
    run_dir.join(CHECKPOINT_DIR)
}

fn stem(step: u64) -> String {
    format!("step-{step:010}")
}

/// Saves a checkpoint of `tensors` (any device; copied to the CPU) at `ckpt.step` into
/// `run_dir/checkpoints/`, then removes all but the newest `keep_last` checkpoints
/// (`0` keeps all). Saving twice at the same step replaces the first. Returns the sidecar path.
///
/// Checkpoints with a step above `ckpt.step` are deleted first: they come from a timeline
/// abandoned by resuming an older checkpoint, and left in place they would be what the next
/// [`load_latest`] returns (and would make pruning delete the new checkpoint). This matches
/// `Logger::resume`, which drops the metrics of that timeline. One process saves into a run
/// directory at a time.
pub fn save<S: AsRef<str>, T: AsRef<Tensor>>(
    run_dir: &Path,
    ckpt: &Checkpoint,
    tensors: &[(S, T)],
    keep_last: usize,
) -> Result<PathBuf, CheckpointError> {
    let dir = checkpoint_dir(run_dir);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    remove_leftovers(&dir)?;
    for later in scan(&dir)?.iter().filter(|e| e.step > ckpt.step) {
        remove_checkpoint(later)?;
    }

    let mut cpu: Vec<(String, Tensor)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let name = name.as_ref();
        let t = t.as_ref();
        if !storable(t.kind()) {
            return Err(CheckpointError::Tensor {
                name: name.to_string(),
                reason: format!("dtype {:?} cannot be stored in safetensors", t.kind()),
            });
        }
        let c = t
            .f_detach()
            .and_then(|t| t.f_to_device(Device::Cpu))
            .and_then(|t| t.f_contiguous())
            .map_err(|e| CheckpointError::Tensor {
                name: name.to_string(),
                reason: e.to_string(),
            })?;
        cpu.push((name.to_string(), c));
    }
    cpu.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = cpu.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(CheckpointError::Tensor {
            name: w[0].0.clone(),
            reason: "given twice".to_string(),
        });
    }

    let stem = stem(ckpt.step);
    let tensors_path = dir.join(format!("{stem}.safetensors"));
    let tmp = crate::files::temp_path(&tensors_path);
    let written = (|| {
        Tensor::write_safetensors(&cpu, &tmp).map_err(|e| CheckpointError::Tensor {
            name: "(all)".to_string(),
            reason: format!("writing {}: {e}", tmp.display()),
        })?;
        // The checksum is computed from the file as written, so it also covers the
        // serialization itself.
        let (bytes, crc) = file_crc(&tmp)?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&tmp))?;
        fs::rename(&tmp, &tensors_path).map_err(io_err(&tensors_path))?;
        Ok::<_, CheckpointError>((bytes, crc))
    })();
    let (tensors_bytes, tensors_crc32) = match written {
        Ok(x) => x,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };

    let sidecar = Sidecar {
        format_version: FORMAT_VERSION,
        checkpoint: ckpt.clone(),
        tensors_file: format!("{stem}.safetensors"),
        tensors_bytes,
        tensors_crc32,
        tensors: cpu
            .iter()
            .map(|(name, t)| TensorInfo {
                name: name.clone(),
                shape: t.size(),
                dtype: format!("{:?}", t.kind()),
            })
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&sidecar).map_err(|e| CheckpointError::Tensor {
        name: "(sidecar)".to_string(),
        reason: e.to_string(),
    })?;
    let json_path = dir.join(format!("{stem}.json"));
    crate::files::write_atomic(&json_path, &json).map_err(io_err(&json_path))?;

    prune(&dir, keep_last)?;
    Ok(json_path)
}

/// Size and CRC32 of a file, streamed.
fn file_crc(path: &Path) -> Result<(u64, u32), CheckpointError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hasher.finalize()))
}

/// Whether safetensors (through tch) can store this dtype; mirrors tch's own conversion.
fn storable(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Bool
            | Kind::Uint8
            | Kind::Int8
            | Kind::Int16
            | Kind::Int
            | Kind::Int64
            | Kind::BFloat16
            | Kind::Half
            | Kind::Float
            | Kind::Double
    )
}

/// Parses `step-<n>.<ext>` file names.
fn parse_name(name: &str, ext: &str) -> Option<u64> {
    name.strip_prefix("step-")?
        .strip_suffix(ext)?
        .strip_suffix('.')?
        .parse()
        .ok()
}

/// Removes temporaries of interrupted saves and tensor files whose sidecar never got written.
fn remove_leftovers(dir: &Path) -> Result<(), CheckpointError> {
    let complete: Vec<u64> = scan(dir)?.iter().map(|e| e.step).collect();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale_tmp = name.starts_with(".step-") && name.ends_with(".tmp");
        let orphan = parse_name(&name, "safetensors").is_some_and(|s| !complete.contains(&s));
        if stale_tmp || orphan {
            let path = entry.path();
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

fn prune(dir: &Path, keep_last: usize) -> Result<(), CheckpointError> {
    if keep_last == 0 {
        return Ok(());
    }
    let entries = scan(dir)?;
    let excess = entries.len().saturating_sub(keep_last);
    for e in &entries[..excess] {
        remove_checkpoint(e)?;
    }
    Ok(())
}

fn remove_checkpoint(e: &CheckpointEntry) -> Result<(), CheckpointError> {
    // Sidecar first: a checkpoint without its sidecar no longer exists, while a sidecar
    // without its tensors would look like a corrupt checkpoint.
    fs::remove_file(&e.path).map_err(io_err(&e.path))?;
    let tensors = e.path.with_extension("safetensors");
    match fs::remove_file(&tensors) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(io_err(&tensors)(err)),
    }
}

fn scan(dir: &Path) -> Result<Vec<CheckpointEntry>, CheckpointError> {
    let mut out = Vec::new();
    let read = match fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in read {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(step) = parse_name(&name, "json") {
            out.push(CheckpointEntry {
                step,
                path: entry.path(),
            });
        }
    }
    out.sort_by_key(|e| e.step);
    Ok(out)
}

/// The checkpoints of a run, oldest first.
pub fn list(run_dir: &Path) -> Result<Vec<CheckpointEntry>, CheckpointError> {
    scan(&checkpoint_dir(run_dir))
}

/// Moves the checkpoint files of steps after `step` (sidecars, tensor files, and a tensor
/// file whose sidecar was never written) from the run's `checkpoints/` into `dest`;
/// returns how many files moved.
pub fn move_after(run_dir: &Path, step: u64, dest: &Path) -> Result<usize, CheckpointError> {
    let dir = checkpoint_dir(run_dir);
    let read = match fs::read_dir(&dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(&dir)(e)),
    };
    let mut later = Vec::new();
    for entry in read {
        let entry = entry.map_err(io_err(&dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let s = parse_name(&name, "json").or_else(|| parse_name(&name, "safetensors"));
        if s.is_some_and(|s| s > step) {
            later.push(entry.path());
        }
    }
    if later.is_empty() {
        return Ok(0);
    }
    fs::create_dir_all(dest).map_err(io_err(dest))?;
    for path in &later {
        let to = dest.join(path.file_name().unwrap_or_default());
        fs::rename(path, &to).map_err(io_err(path))?;
    }
    Ok(later.len())
}

/// Loads the newest checkpoint of a run. A damaged newest checkpoint is an error (naming
/// the file), not a silent fall back to an older one: load an older one explicitly with
/// [`load`] if that is what is wanted.
pub fn load_latest(run_dir: &Path) -> Result<Loaded, CheckpointError> {
    let dir = checkpoint_dir(run_dir);
    let newest = scan(&dir)?
        .pop()
        .ok_or(CheckpointError::NoCheckpoint { dir })?;
    load(&newest.path)
}

/// Reads only the metadata of a checkpoint (no tensors, no checksum): cheap, for listing.
/// `path` is the sidecar or the `.safetensors` file.
pub fn read_metadata(path: &Path) -> Result<Checkpoint, CheckpointError> {
    Ok(read_sidecar(&path.with_extension("json"))?.checkpoint)
}

fn read_sidecar(json_path: &Path) -> Result<Sidecar, CheckpointError> {
    let text = fs::read(json_path).map_err(io_err(json_path))?;
    // Check the version before the full structure, so an old or new format gets the
    // version error rather than a confusing missing-field one.
    let raw: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| CheckpointError::Corrupt {
            path: json_path.to_path_buf(),
            reason: format!("invalid JSON: {e}"),
        })?;
    let found = raw.get("format_version").and_then(|v| v.as_u64());
    if found != Some(u64::from(FORMAT_VERSION)) {
        let Some(found) = found else {
            return Err(CheckpointError::Corrupt {
                path: json_path.to_path_buf(),
                reason: "no format_version field".to_string(),
            });
        };
        return Err(CheckpointError::Version {
            path: json_path.to_path_buf(),
            found: u32::try_from(found).unwrap_or(u32::MAX),
            expected: FORMAT_VERSION,
        });
    }
    serde_json::from_value(raw).map_err(|e| CheckpointError::Corrupt {
        path: json_path.to_path_buf(),
        reason: format!("sidecar fields: {e}"),
    })
}

/// Loads a checkpoint: `path` is its sidecar (`step-<n>.json`) or its `.safetensors` file;
/// a run directory or its `checkpoints/` folder gives the newest checkpoint in it.
/// The tensor file's size and CRC32 are checked against the sidecar before parsing, so a
/// truncated or damaged file is reported as such, naming it.
pub fn load(path: &Path) -> Result<Loaded, CheckpointError> {
    if path.is_dir() {
        let dir = if path.join(CHECKPOINT_DIR).is_dir() {
            checkpoint_dir(path)
        } else {
            path.to_path_buf()
        };
        let newest = scan(&dir)?
            .pop()
            .ok_or(CheckpointError::NoCheckpoint { dir })?;
        return load(&newest.path);
    }
    let json_path = path.with_extension("json");
    let sidecar = read_sidecar(&json_path)?;
    let tensors_path = json_path.with_file_name(&sidecar.tensors_file);
    let (bytes, crc) = file_crc(&tensors_path)?;
    if bytes != sidecar.tensors_bytes {
        return Err(CheckpointError::Corrupt {
            path: tensors_path,
            reason: format!(
                "{bytes} bytes, the sidecar recorded {} (truncated or overwritten)",
                sidecar.tensors_bytes
            ),
        });
    }
    if crc != sidecar.tensors_crc32 {
        return Err(CheckpointError::Corrupt {
            path: tensors_path,
            reason: format!(
                "CRC32 {crc:08x}, the sidecar recorded {:08x} (damaged content)",
                sidecar.tensors_crc32
            ),
        });
    }
    let mut tensors =
        Tensor::read_safetensors(&tensors_path).map_err(|e| CheckpointError::Corrupt {
            path: tensors_path.clone(),
            reason: e.to_string(),
        })?;
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Loaded {
        checkpoint: sidecar.checkpoint,
        tensors,
        path: json_path,
    })
}

impl Loaded {
    /// The tensors whose name starts with `prefix`, with the prefix removed (shallow copies).
    pub fn with_prefix(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.tensors
            .iter()
            .filter_map(|(n, t)| {
                n.strip_prefix(prefix)
                    .map(|s| (s.to_string(), t.shallow_clone()))
            })
            .collect()
    }

    /// [`copy_into`] with this checkpoint's path in the error message.
    pub fn copy_into(&self, vs: &mut VarStore, prefix: &str) -> Result<(), CheckpointError> {
        copy_named(
            &sorted_variables(vs),
            &self.tensors,
            prefix,
            &self.path.display().to_string(),
        )
    }

    /// [`copy_into_tensors`] with this checkpoint's path in the error message.
    pub fn copy_into_tensors(
        &self,
        targets: &[(String, Tensor)],
        prefix: &str,
    ) -> Result<(), CheckpointError> {
        copy_named(
            targets,
            &self.tensors,
            prefix,
            &self.path.display().to_string(),
        )
    }
}

fn sorted_variables(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The variables of a VarStore as checkpoint entries named `prefix + name`, sorted by name
/// (shallow copies: no data is copied until [`save`]).
pub fn var_store_tensors(vs: &VarStore, prefix: &str) -> Vec<(String, Tensor)> {
    sorted_variables(vs)
        .into_iter()
        .map(|(n, t)| (format!("{prefix}{n}"), t))
        .collect()
}

/// Copies the checkpoint tensors named `prefix + <variable name>` into the variables of
/// `vs` (moving them to its device). Names, shapes and dtypes must match exactly, in both
/// directions; otherwise nothing is copied and the error lists every difference.
/// Tensors outside `prefix` are ignored (e.g. `optim/` when loading `model/`).
pub fn copy_into(
    vs: &mut VarStore,
    tensors: &[(String, Tensor)],
    prefix: &str,
) -> Result<(), CheckpointError> {
    copy_named(&sorted_variables(vs), tensors, prefix, "tensors")
}

/// Like [`copy_into`] for tensors outside a VarStore: `targets` are shallow copies of the
/// destination tensors, whose storage receives the data.
pub fn copy_into_tensors(
    targets: &[(String, Tensor)],
    tensors: &[(String, Tensor)],
    prefix: &str,
) -> Result<(), CheckpointError> {
    copy_named(targets, tensors, prefix, "tensors")
}

fn copy_named(
    targets: &[(String, Tensor)],
    tensors: &[(String, Tensor)],
    prefix: &str,
    source_name: &str,
) -> Result<(), CheckpointError> {
    let saved: BTreeMap<&str, &Tensor> = tensors
        .iter()
        .filter_map(|(n, t)| n.strip_prefix(prefix).map(|s| (s, t)))
        .collect();
    let wanted: BTreeMap<&str, &Tensor> = targets.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut diffs = Vec::new();
    for (&name, dst) in &wanted {
        match saved.get(name) {
            None => diffs.push(TensorDiff::Missing {
                name: name.to_string(),
                shape: dst.size(),
            }),
            Some(src) if src.size() != dst.size() => diffs.push(TensorDiff::Shape {
                name: name.to_string(),
                model: dst.size(),
                checkpoint: src.size(),
            }),
            Some(src) if src.kind() != dst.kind() => diffs.push(TensorDiff::Dtype {
                name: name.to_string(),
                model: dst.kind(),
                checkpoint: src.kind(),
            }),
            Some(_) => {}
        }
    }
    for (&name, src) in &saved {
        if !wanted.contains_key(name) {
            diffs.push(TensorDiff::Unexpected {
                name: name.to_string(),
                shape: src.size(),
            });
        }
    }
    if !diffs.is_empty() {
        return Err(CheckpointError::Mismatch {
            source_name: source_name.to_string(),
            prefix: prefix.to_string(),
            diffs: TensorDiffs(diffs),
        });
    }
    tch::no_grad(|| {
        for (&name, dst) in &wanted {
            let mut dst = dst.shallow_clone();
            dst.f_copy_(saved[name])
                .map_err(|e| CheckpointError::Tensor {
                    name: name.to_string(),
                    reason: e.to_string(),
                })?;
        }
        Ok(())
    })
}

/// The dotted keys whose values differ between two TOML configs, one line each
/// (`key: saved <a>, current <b>`; a key present on one side only shows `(absent)`).
/// Use it on resume to say exactly how the current config departs from the checkpoint's.
pub fn config_differences(
    saved_toml: &str,
    current_toml: &str,
) -> Result<Vec<String>, CheckpointError> {
    let flat = |which: &'static str, text: &str| {
        crate::logging::flatten_toml(text)
            .map(|v| v.into_iter().collect::<BTreeMap<_, _>>())
            .map_err(|e| CheckpointError::Config {
                which,
                reason: e.to_string(),
            })
    };
    let saved = flat("saved", saved_toml)?;
    let current = flat("current", current_toml)?;
    let show = |v: Option<&toml::Value>| v.map_or("(absent)".to_string(), |v| v.to_string());
    let mut keys: Vec<&String> = saved.keys().chain(current.keys()).collect();
    keys.sort();
    keys.dedup();
    Ok(keys
        .into_iter()
        .filter(|k| saved.get(*k) != current.get(*k))
        .map(|k| {
            format!(
                "{k}: saved {}, current {}",
                show(saved.get(k)),
                show(current.get(k))
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_parse_back() {
        assert_eq!(parse_name(&format!("{}.json", stem(42)), "json"), Some(42));
        assert_eq!(parse_name("step-7.safetensors", "safetensors"), Some(7));
        assert_eq!(parse_name("step-7.json.tmp", "json"), None);
        assert_eq!(parse_name(".step-7.json.tmp", "tmp"), None);
        assert_eq!(parse_name("step-x.json", "json"), None);
    }

    #[test]
    fn config_differences_name_each_key() {
        let a = "seed = 1\n[model]\nheads = 4\nbias = false\n";
        let b = "seed = 1\n[model]\nheads = 8\n[optim]\nlr = 0.1\n";
        assert_eq!(
            config_differences(a, b).unwrap(),
            vec![
                "model.bias: saved false, current (absent)".to_string(),
                "model.heads: saved 4, current 8".to_string(),
                "optim.lr: saved (absent), current 0.1".to_string(),
            ]
        );
        assert!(config_differences(a, a).unwrap().is_empty());
    }
}
