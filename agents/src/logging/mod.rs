//! Run logging: TensorBoard event files (scalars, text, histograms, images, hparams) and a JSONL copy
//! of every scalar, all under one run directory.
//!
//! ```text
//! runs/<name>/
//!   events.out.tfevents.*   TensorBoard (one file per Logger::create / Logger::resume)
//!   metrics.jsonl           {"step":..,"tag":..,"value":..} per scalar
//!   config.toml             the resolved config (write_config)
//!   checkpoints/            see crate::checkpoint
//! ```
//!
//! Tags are grouped by prefix as in CleanRL: `train/` (losses, grad norm, lr), `eval/`
//! (accuracy per difficulty, agreement with the oracle chain), `charts/` (chain lengths,
//! entropy) and `perf/` (examples/s). TensorBoard shows one section per prefix.
//!
//! Resuming: [`Logger::resume`] at step `s` drops the JSONL lines with `step >= s` and
//! writes a `SessionLog.START` event at `s`; TensorBoard's event reader then discards
//! the old events with `step >= s`, so the curves continue without a duplicated tail.
//! A run resumed from its checkpoint at step `c` calls [`Logger::resume_after`]`(dir, c)`,
//! which is `resume(dir, c + 1)`: everything logged at step `c` was logged before that
//! checkpoint was saved, and the resumed run's first update is `c + 1`.

mod event_file;
mod hparams;
mod summaries;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use event_file::{wall_time, EventFile};

pub use hparams::{flatten_toml, hparams_from_toml, HParam};
pub use summaries::{
    Histogram, PngHeader, HISTOGRAM_BUCKETS, HPARAMS_EXPERIMENT_TAG, HPARAMS_SESSION_START_TAG,
};

/// Name of the JSONL metrics file in a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Name of the resolved config in a run directory.
pub const CONFIG_FILE: &str = "config.toml";
/// The run's history: one JSON record per start and resume (see [`append_history`]).
pub const HISTORY_FILE: &str = "history.jsonl";

/// Errors of the logging module.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A protobuf message could not be serialized.
    #[error("encoding a TensorBoard record: {0}")]
    Encode(String),
    /// Bytes given as a PNG image are not one.
    #[error("{0}")]
    Image(String),
    /// A TOML document given for hyperparameters did not parse.
    #[error("config TOML: {0}")]
    Toml(String),
}

impl LogError {
    fn io(path: &Path, source: io::Error) -> Self {
        LogError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Writes one run's TensorBoard events and `metrics.jsonl`.
///
/// Writes are buffered; [`Logger::flush`] (and drop) push them to the files. Every method
/// takes the global `step` (the x axis in TensorBoard).
pub struct Logger {
    run_dir: PathBuf,
    events: EventFile,
    jsonl_path: PathBuf,
    jsonl: BufWriter<File>,
    // Kept so that the experiment record can be written with the same time as the session.
    start_time: f64,
}

impl Logger {
    /// Starts a fresh run in `run_dir` (created if needed): a new event file and an empty
    /// `metrics.jsonl`. Event files from an earlier run in the same directory are left alone
    /// and TensorBoard would show both: refuse or clear a used directory before calling this
    /// (or call [`Logger::resume`]).
    pub fn create(run_dir: &Path) -> Result<Logger, LogError> {
        fs::create_dir_all(run_dir).map_err(|e| LogError::io(run_dir, e))?;
        let jsonl_path = run_dir.join(METRICS_FILE);
        let file = File::create(&jsonl_path).map_err(|e| LogError::io(&jsonl_path, e))?;
        Self::open(run_dir, jsonl_path, file, 0)
    }

    /// Continues the run in `run_dir` from `step`, the first step the resumed run will log:
    /// metrics logged at `step` or later by the interrupted process are dropped from
    /// `metrics.jsonl` (and from TensorBoard's view, through a restart marker), new ones are
    /// appended. A truncated last JSONL line (process killed mid-write) is dropped too.
    ///
    /// Resuming from a checkpoint, use [`Logger::resume_after`] with the checkpoint's step.
    pub fn resume(run_dir: &Path, step: u64) -> Result<Logger, LogError> {
        fs::create_dir_all(run_dir).map_err(|e| LogError::io(run_dir, e))?;
        let jsonl_path = run_dir.join(METRICS_FILE);
        truncate_jsonl(&jsonl_path, step)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&jsonl_path)
            .map_err(|e| LogError::io(&jsonl_path, e))?;
        Self::open(run_dir, jsonl_path, file, step)
    }

    /// Continues the run in `run_dir` after its checkpoint at `checkpoint_step`: the records
    /// of that step and earlier ones are kept (a checkpoint is saved after everything of its
    /// step was logged, see [`Logger::sync`]), later ones are dropped, since the resumed run
    /// logs them again from `checkpoint_step + 1`.
    pub fn resume_after(run_dir: &Path, checkpoint_step: u64) -> Result<Logger, LogError> {
        Self::resume(run_dir, checkpoint_step.saturating_add(1))
    }

    fn open(
        run_dir: &Path,
        jsonl_path: PathBuf,
        jsonl: File,
        step: u64,
    ) -> Result<Logger, LogError> {
        let mut events = EventFile::create(run_dir)?;
        // The first START of a run is only a marker; any later one (a resume) purges.
        events.session_start(step)?;
        Ok(Logger {
            run_dir: run_dir.to_path_buf(),
            events,
            jsonl_path,
            jsonl: BufWriter::new(jsonl),
            start_time: wall_time(),
        })
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The event file this logger writes.
    pub fn event_file(&self) -> &Path {
        self.events.path()
    }

    /// Logs a scalar to TensorBoard (as f32, its only scalar type) and to `metrics.jsonl`
    /// (full f64; NaN and infinities as the strings `"NaN"`, `"inf"`, `"-inf"`, since JSON
    /// has no such numbers).
    pub fn scalar(&mut self, tag: &str, value: f64, step: u64) -> Result<(), LogError> {
        self.events.summary(summaries::scalar(tag, value), step)?;
        self.write_jsonl(tag, value, step)
    }

    fn write_jsonl(&mut self, tag: &str, value: f64, step: u64) -> Result<(), LogError> {
        let path = &self.jsonl_path;
        let w = &mut self.jsonl;
        let io_err = |e| LogError::io(path, e);
        write!(w, "{{\"step\":{step},\"tag\":").map_err(io_err)?;
        serde_json::to_writer(&mut *w, tag).map_err(|e| io_err(e.into()))?;
        w.write_all(b",\"value\":").map_err(io_err)?;
        if value.is_finite() {
            serde_json::to_writer(&mut *w, &value).map_err(|e| io_err(e.into()))?;
        } else if value.is_nan() {
            w.write_all(b"\"NaN\"").map_err(io_err)?;
        } else if value > 0.0 {
            w.write_all(b"\"inf\"").map_err(io_err)?;
        } else {
            w.write_all(b"\"-inf\"").map_err(io_err)?;
        }
        w.write_all(b"}\n").map_err(io_err)
    }

    /// Logs a markdown text (TensorBoard's TEXT tab renders it: tables, code blocks).
    /// See [`markdown_table`] for rendered examples.
    pub fn text(&mut self, tag: &str, markdown: &str, step: u64) -> Result<(), LogError> {
        self.events.summary(summaries::text(tag, markdown)?, step)
    }

    /// Logs an encoded PNG image (TensorBoard's IMAGES tab shows it, one image per step);
    /// its width, height and colorspace are read from its header, and bytes that are not a
    /// PNG are an error.
    pub fn image(&mut self, tag: &str, png: &[u8], step: u64) -> Result<(), LogError> {
        self.events.summary(summaries::image(tag, png)?, step)
    }

    /// Logs a histogram of `values` (non-finite values are left out); bucketing as in
    /// [`Histogram::from_values`].
    pub fn histogram(&mut self, tag: &str, values: &[f64], step: u64) -> Result<(), LogError> {
        self.histogram_buckets(tag, &Histogram::from_values(values), step)
    }

    /// Logs an already bucketed histogram.
    pub fn histogram_buckets(
        &mut self,
        tag: &str,
        histogram: &Histogram,
        step: u64,
    ) -> Result<(), LogError> {
        self.events.summary(histogram.to_summary(tag), step)
    }

    /// Records the run's hyperparameters for the HPARAMS tab (call once, at the start of the
    /// run; [`hparams_from_toml`] turns the resolved config into this list).
    ///
    /// With `metric_tags` empty, TensorBoard builds the tab's columns itself from every run's
    /// hyperparameters and every scalar tag, which is the right choice when runs with
    /// different configs are compared. With metric tags given, this run also records an
    /// experiment naming exactly these metric columns and its hyperparameter names;
    /// TensorBoard then uses the first experiment record it finds in the log directory for
    /// all runs, so pass the same list in every run that is meant to be compared.
    pub fn hparams(
        &mut self,
        hparams: &[(String, HParam)],
        metric_tags: &[String],
    ) -> Result<(), LogError> {
        if !metric_tags.is_empty() {
            let exp = summaries::hparams_experiment(hparams, metric_tags, self.start_time)?;
            self.events.summary(exp, 0)?;
        }
        let start = summaries::hparams_session_start(hparams, self.start_time)?;
        self.events.summary(start, 0)
    }

    /// Pushes everything logged so far to the files (TensorBoard and readers of
    /// `metrics.jsonl` see it afterwards).
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.events.flush()?;
        self.jsonl
            .flush()
            .map_err(|e| LogError::io(&self.jsonl_path, e))
    }

    /// Flushes and makes both files durable (fsync). Call it before saving a checkpoint:
    /// [`Logger::resume_after`] keeps the records of the checkpoint's step and earlier ones
    /// as the complete history of the run up to there, so they must be on disk before the
    /// checkpoint is, even if the machine loses power right after.
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.flush()?;
        self.events.sync()?;
        self.jsonl
            .get_ref()
            .sync_data()
            .map_err(|e| LogError::io(&self.jsonl_path, e))
    }

    /// Records that the run directory was renamed to `dir` (open files keep being written;
    /// this updates the paths the logger reports).
    pub(crate) fn moved_to(&mut self, dir: &Path) {
        self.run_dir = dir.to_path_buf();
        self.jsonl_path = dir.join(METRICS_FILE);
        self.events.moved_to(dir);
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; call flush() to see them.
        let _ = self.flush();
    }
}

/// Keeps the lines of `metrics.jsonl` whose step is below `step`; rewrites the file
/// atomically so that a crash during resume cannot lose the earlier metrics.
fn truncate_jsonl(path: &Path, step: u64) -> Result<(), LogError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(LogError::io(path, e)),
    };
    let mut kept = Vec::new();
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(|e| LogError::io(path, e))?;
        let keep = serde_json::from_slice::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
            .is_some_and(|s| s < step);
        if keep {
            kept.extend_from_slice(&line);
            kept.push(b'\n');
        }
    }
    crate::files::write_atomic(path, &kept).map_err(|e| LogError::io(path, e))
}

/// Writes the resolved config to `run_dir/config.toml` (atomically: a crash leaves the old
/// file or the new one, never half of it). Returns the path written.
pub fn write_config(run_dir: &Path, toml_text: &str) -> Result<PathBuf, LogError> {
    fs::create_dir_all(run_dir).map_err(|e| LogError::io(run_dir, e))?;
    let path = run_dir.join(CONFIG_FILE);
    crate::files::write_atomic(&path, toml_text.as_bytes()).map_err(|e| LogError::io(&path, e))?;
    Ok(path)
}

/// Appends one JSON record (a start, a resume and what it changed) to the run's
/// `history.jsonl`, synced to disk: the record of how a run came to be what it is.
pub fn append_history(run_dir: &Path, record: &serde_json::Value) -> Result<(), LogError> {
    let path = run_dir.join(HISTORY_FILE);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| LogError::io(&path, e))?;
    let mut line = record.to_string();
    line.push('\n');
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(|e| LogError::io(&path, e))
}

/// The thread count the run's `history.jsonl` recorded last (at its latest start or resume),
/// if any record has one.
pub fn last_recorded_threads(run_dir: &Path) -> Option<i64> {
    let text = fs::read_to_string(run_dir.join(HISTORY_FILE)).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|r| r.get("threads").and_then(serde_json::Value::as_i64))
}

/// A markdown table for the TEXT tab (e.g. rendered examples: input, chain, answer, target).
/// Cells are put in code spans (newlines become spaces), so token strings show verbatim and
/// a `|` inside a cell does not split it (TensorBoard's markdown keeps code spans whole).
pub fn markdown_table<S: AsRef<str>>(header: &[&str], rows: &[Vec<S>]) -> String {
    let mut out = String::new();
    let line = |cells: &mut dyn Iterator<Item = String>| {
        let mut s = String::from("|");
        for c in cells {
            s.push(' ');
            s.push_str(&c);
            s.push_str(" |");
        }
        s.push('\n');
        s
    };
    out.push_str(&line(&mut header.iter().map(|h| h.to_string())));
    out.push_str(&line(&mut header.iter().map(|_| "---".to_string())));
    for row in rows {
        out.push_str(&line(&mut row.iter().map(|c| cell(c.as_ref()))));
    }
    out
}

fn cell(text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    let escaped = text.replace(['\n', '\r'], " ");
    // A backtick inside would end the code span early; a longer fence avoids that.
    if escaped.contains('`') {
        format!("`` {escaped} ``")
    } else {
        format!("`{escaped}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TensorBoard reads a run's event files in name order and a restart marker purges only
    /// what came before it, so every new file must sort last, whatever the clock says.
    #[test]
    fn a_new_event_file_sorts_after_the_existing_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let future = "events.out.tfevents.9999999990.elsewhere.1.0";
        fs::write(tmp.path().join(future), b"").unwrap();
        let mut names = vec![future.to_string()];
        for step in [0, 5, 5] {
            let log = if step == 0 {
                Logger::create(tmp.path())
            } else {
                Logger::resume(tmp.path(), step)
            }
            .unwrap();
            let name = log.event_file().file_name().unwrap().to_string_lossy();
            assert!(
                names.iter().all(|n| n.as_str() < name.as_ref()),
                "{name} after {names:?}"
            );
            names.push(name.into_owned());
        }
    }

    /// The summaries of every event in `dir`'s event files, as (step, value), read back from
    /// the TFRecord framing as TensorBoard reads it.
    fn read_summaries(dir: &Path) -> Vec<(i64, tensorboard_proto::summary::Summary_Value)> {
        use protobuf::Message;
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.to_string_lossy().contains("tfevents") {
                continue;
            }
            let bytes = fs::read(&path).unwrap();
            let mut at = 0;
            while at + 12 <= bytes.len() {
                let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
                let data = &bytes[at + 12..at + 12 + len];
                let event = tensorboard_proto::event::Event::parse_from_bytes(data).unwrap();
                for v in event.get_summary().get_value() {
                    out.push((event.get_step(), v.clone()));
                }
                at += 12 + len + 4;
            }
        }
        out
    }

    #[test]
    fn an_image_round_trips_with_its_size_and_colorspace() {
        let tmp = tempfile::tempdir().unwrap();
        let png_path = tmp.path().join("red.png");
        {
            use plotters::prelude::*;
            let area = BitMapBackend::new(&png_path, (5, 3)).into_drawing_area();
            area.fill(&RED).unwrap();
            area.present().unwrap();
        }
        let png = fs::read(&png_path).unwrap();
        let run = tmp.path().join("run");
        let mut log = Logger::create(&run).unwrap();
        log.image("plots/red", &png, 7).unwrap();
        let err = log.image("plots/bad", b"GIF89a not a png at all....", 8);
        assert!(
            matches!(&err, Err(LogError::Image(m)) if m.contains("not a PNG")),
            "{err:?}"
        );
        log.flush().unwrap();
        let images: Vec<_> = read_summaries(&run)
            .into_iter()
            .filter(|(_, v)| v.has_image())
            .collect();
        assert_eq!(images.len(), 1, "one image, the bad one refused");
        let (step, value) = &images[0];
        assert_eq!((*step, value.get_tag()), (7, "plots/red"));
        let image = value.get_image();
        assert_eq!((image.get_width(), image.get_height()), (5, 3));
        assert_eq!(image.get_colorspace(), 3, "plotters writes RGB");
        assert_eq!(image.get_encoded_image_string(), &png[..]);
    }

    #[test]
    fn png_header_reads_each_colour_type_and_refuses_the_rest() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&480u32.to_be_bytes());
        png.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        for (colour_type, colorspace) in [(0, 1), (4, 2), (2, 3), (3, 3), (6, 4)] {
            png[25] = colour_type;
            let h = PngHeader::read(&png).unwrap();
            assert_eq!((h.width, h.height, h.colorspace), (640, 480, colorspace));
        }
        png[25] = 5;
        assert!(PngHeader::read(&png).is_err());
        png[25] = 6;
        png[16..20].copy_from_slice(&0u32.to_be_bytes());
        assert!(PngHeader::read(&png).is_err());
        assert!(PngHeader::read(&png[..20]).is_err());
    }

    #[test]
    fn markdown_table_wraps_cells_in_code_spans() {
        let t = markdown_table(&["input", "chain"], &[vec!["3|4", "a\nb"], vec!["x`y", ""]]);
        assert_eq!(
            t,
            "| input | chain |\n| --- | --- |\n| `3|4` | `a b` |\n| `` x`y `` |  |\n"
        );
    }
}
