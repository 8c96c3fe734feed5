//! One TensorBoard event file: TFRecord framing (from `tensorboard-rs`) around `Event` protos.
//!
//! `tensorboard-rs`'s own `EventFileWriter` panics on I/O errors and writes from a background
//! thread, so a `flush()` there does not mean the bytes are in the file. This writer is
//! synchronous and returns errors; it reuses the crate's record framing and CRC.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use protobuf::Message;
use tensorboard_proto::event::{Event, SessionLog, SessionLog_SessionStatus};
use tensorboard_proto::summary::Summary;
use tensorboard_rs::record_writer::RecordWriter;

use super::LogError;

/// Distinguishes files opened by one process within the same second.
static FILE_SEQ: AtomicU64 = AtomicU64::new(0);

/// Seconds since the Unix epoch, as TensorBoard stores wall times.
pub(crate) fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Appends events to a new `events.out.tfevents.*` file in a directory.
pub(crate) struct EventFile {
    path: PathBuf,
    out: RecordWriter<BufWriter<File>>,
    // The same file, for fsync (the record writer does not give its file back).
    sync: File,
}

impl EventFile {
    /// Creates a fresh event file in `dir` and writes the version header TensorBoard expects
    /// (`brain.Event:2`, which also enables its restart purging, see [`EventFile::session_start`]).
    pub(crate) fn create(dir: &Path) -> Result<Self, LogError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // TensorBoard reads a run's files in name order, and a resumed run's restart marker
        // only purges what it has read before it: the new file must sort after every file
        // already there. A resume within the same second as the killed process's start (or
        // after a clock step back) would not, by the time alone.
        let secs = match last_event_file_secs(dir) {
            Some(last) if last >= now => last + 1,
            _ => now,
        };
        let pid = std::process::id();
        let (file, path) = loop {
            let seq = FILE_SEQ.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(
                "events.out.tfevents.{secs:010}.factorexe.{pid}.{seq}"
            ));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => break (f, path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(LogError::io(&path, e)),
            }
        };
        let sync = file.try_clone().map_err(|e| LogError::io(&path, e))?;
        let mut this = EventFile {
            path,
            out: RecordWriter::new(BufWriter::new(file)),
            sync,
        };
        let mut header = Event::new();
        header.set_wall_time(wall_time());
        header.set_file_version("brain.Event:2".to_string());
        this.write_event(&header)?;
        this.flush()?;
        Ok(this)
    }

    /// The file being written.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Records that the directory holding the file was renamed to `dir`.
    pub(crate) fn moved_to(&mut self, dir: &Path) {
        if let Some(name) = self.path.file_name() {
            self.path = dir.join(name);
        }
    }

    /// Writes a `SessionLog.START` at `step`. TensorBoard treats every START after the first
    /// in a run as a restart and drops the events it had read with `step >= this step`, which
    /// is exactly what a resumed run needs.
    pub(crate) fn session_start(&mut self, step: u64) -> Result<(), LogError> {
        let mut log = SessionLog::new();
        log.set_status(SessionLog_SessionStatus::START);
        let mut event = Event::new();
        event.set_wall_time(wall_time());
        event.set_step(step_i64(step));
        event.set_session_log(log);
        self.write_event(&event)
    }

    /// Writes one summary event at `step`.
    pub(crate) fn summary(&mut self, summary: Summary, step: u64) -> Result<(), LogError> {
        let mut event = Event::new();
        event.set_wall_time(wall_time());
        event.set_step(step_i64(step));
        event.set_summary(summary);
        self.write_event(&event)
    }

    fn write_event(&mut self, event: &Event) -> Result<(), LogError> {
        let bytes = event
            .write_to_bytes()
            .map_err(|e| LogError::Encode(e.to_string()))?;
        self.out
            .write(&bytes)
            .map_err(|e| LogError::io(&self.path, e))
    }

    /// Pushes buffered events to the OS, so a reader sees them.
    pub(crate) fn flush(&mut self) -> Result<(), LogError> {
        self.out.flush().map_err(|e| LogError::io(&self.path, e))
    }

    /// Flushes, then makes the file's content durable (fsync).
    pub(crate) fn sync(&mut self) -> Result<(), LogError> {
        self.flush()?;
        self.sync
            .sync_data()
            .map_err(|e| LogError::io(&self.path, e))
    }
}

/// The time field of the last (in name order) `events.out.tfevents.<secs>.*` file in `dir`.
fn last_event_file_secs(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("events.out.tfevents.")?
                .split('.')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max()
}

fn step_i64(step: u64) -> i64 {
    i64::try_from(step).unwrap_or(i64::MAX)
}
