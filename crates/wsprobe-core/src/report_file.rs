//! Report files (`load --report-json`, `run --report json=…`) written whole or not at all.
//!
//! A report is only worth something complete: CI cancellation, `timeout(1)` and Kubernetes
//! stop a run with SIGTERM, and a half-written or truncated file then reads as a broken
//! report, or worse, as the previous run's. So a [`ReportFile`] is claimed when the run
//! starts (a bad path is a usage error before anything connects) by creating a temporary
//! file in the same directory, and [`ReportFile::write`] fills that file, syncs it and
//! renames it over the path: on one file system the rename is atomic, so the path always
//! holds either the previous report or the new one, never a part.
//!
//! A report written bit by bit during the run (`load --hdr-log`) goes the same way: into
//! the temporary file through [`Write`], put in place by [`ReportFile::finish`].
//!
//! A path that is not a regular file (`/dev/stdout`, a named pipe) cannot be replaced by a
//! rename, and is not a report a later run would reread: it is written directly.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A report file claimed at the start of a run, written at its end.
#[derive(Debug)]
pub struct ReportFile {
    /// The path as the user gave it (for messages).
    path: PathBuf,
    target: Target,
}

#[derive(Debug)]
enum Target {
    /// A temporary file beside the final path, renamed over it once written. `None` once
    /// written (or given up), so [`Drop`] knows whether to remove it.
    Atomic {
        temporary: Option<(PathBuf, File)>,
        destination: PathBuf,
    },
    /// A device or a pipe, written in place.
    Direct(File),
}

/// Tells temporary files of one process apart (several reports of one run).
static NEXT: AtomicU32 = AtomicU32::new(0);

impl ReportFile {
    /// Claims `path`: checks that a report can be written there and creates the
    /// temporary file it will be written to. The file at `path`, if any, is left as it
    /// is until [`write`](Self::write).
    pub fn create(path: &Path) -> io::Result<Self> {
        // A symbolic link is followed: the report replaces the file it points to.
        let destination = match std::fs::canonicalize(path) {
            Ok(resolved) => resolved,
            Err(e) if e.kind() == io::ErrorKind::NotFound => path.to_owned(),
            Err(e) => return Err(e),
        };
        match std::fs::metadata(&destination) {
            Ok(meta) if meta.is_dir() => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    "it is a directory",
                ));
            }
            Ok(meta) if !meta.is_file() => {
                let file = OpenOptions::new().write(true).open(&destination)?;
                return Ok(Self {
                    path: path.to_owned(),
                    target: Target::Direct(file),
                });
            }
            _ => {}
        }
        let directory = match destination.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = destination
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "it names no file"))?
            .to_string_lossy()
            .into_owned();
        let temporary = create_temporary(&directory, &name)?;
        Ok(Self {
            path: path.to_owned(),
            target: Target::Atomic {
                temporary: Some(temporary),
                destination,
            },
        })
    }

    /// The path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the whole report and puts it in place.
    pub fn write(mut self, contents: &[u8]) -> io::Result<()> {
        self.write_all(contents)?;
        self.finish()
    }

    /// Puts what was written in place (nothing to do for a device or a pipe).
    pub fn finish(mut self) -> io::Result<()> {
        match &mut self.target {
            Target::Direct(file) => file.flush(),
            Target::Atomic {
                temporary,
                destination,
            } => {
                let Some((temporary_path, file)) = temporary.take() else {
                    return Ok(());
                };
                let finished = file
                    .sync_all()
                    .and_then(|()| std::fs::rename(&temporary_path, &*destination));
                if finished.is_err() {
                    let _ = std::fs::remove_file(&temporary_path);
                }
                finished
            }
        }
    }

    fn file(&mut self) -> io::Result<&mut File> {
        match &mut self.target {
            Target::Direct(file) => Ok(file),
            Target::Atomic {
                temporary: Some((_, file)),
                ..
            } => Ok(file),
            Target::Atomic {
                temporary: None, ..
            } => Err(io::Error::other("the report was already put in place")),
        }
    }
}

/// Writes into the report (the temporary file until [`ReportFile::finish`]).
impl Write for ReportFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file()?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file()?.flush()
    }
}

impl Drop for ReportFile {
    /// A report never written (the run failed before) leaves no temporary file behind.
    fn drop(&mut self) {
        if let Target::Atomic {
            temporary: Some((path, _)),
            ..
        } = &self.target
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Creates `.NAME.wsprobe-PID-N.tmp` in `directory`, a name no other process or report
/// uses (`create_new`, so an existing file is never reused).
fn create_temporary(directory: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    let mut attempts = 0;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = directory.join(format!(".{name}.wsprobe-{}-{n}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_old_report_stays_whole_until_the_new_one_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(&path, "old").unwrap();
        let report = ReportFile::create(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(entries(dir.path()).len(), 2, "a temporary file beside it");
        report.write(b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(entries(dir.path()), ["report.json"]);
    }

    #[test]
    fn a_report_written_bit_by_bit_appears_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rtt.hlog");
        let mut report = ReportFile::create(&path).unwrap();
        report.write_all(b"one ").unwrap();
        report.write_all(b"two").unwrap();
        assert!(!path.exists(), "not before it is finished");
        report.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one two");
        assert_eq!(entries(dir.path()), ["rtt.hlog"]);
    }

    #[test]
    fn a_report_never_written_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        drop(ReportFile::create(&path).unwrap());
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn bad_paths_fail_at_once() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ReportFile::create(dir.path()).is_err(), "a directory");
        assert!(ReportFile::create(&dir.path().join("missing/report.json")).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_is_followed_and_a_device_written_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        std::fs::write(&real, "old").unwrap();
        ReportFile::create(&link).unwrap().write(b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        ReportFile::create(Path::new("/dev/null"))
            .unwrap()
            .write(b"into the void")
            .unwrap();
    }
}
