//! A consistent copy of a live database, with SQLite's online backup API.
//!
//! The copy is read in one step (all pages under one read transaction), so
//! it is one snapshot even while the daemon keeps writing: WAL lets the
//! writer go on meanwhile. It is written next to the destination under a
//! temporary name, checked with `PRAGMA integrity_check`, and only then
//! renamed into place, so a failed or interrupted backup never leaves a
//! file that looks like a good one.

use super::{SCHEMA_VERSION, StoreError, check_version};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a finished backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub schema_version: i64,
    pub channels: i64,
    pub messages: i64,
}

/// Copies the database at `src` to `dest` (which must not exist yet).
///
/// # Errors
/// `dest` exists or cannot be written, `src` is not a database this binary
/// understands, or the copy fails its integrity check.
pub fn backup(src: &Path, dest: &Path) -> Result<BackupReport, StoreError> {
    let io = |what: &str, e: std::io::Error| StoreError::Corrupt {
        what: "backup",
        detail: format!("{what}: {e}"),
    };
    if dest.exists() {
        return Err(StoreError::Corrupt {
            what: "backup",
            detail: format!(
                "{} exists; give a new file name (backups never overwrite)",
                dest.display()
            ),
        });
    }
    if !src.exists() {
        return Err(StoreError::Corrupt {
            what: "backup",
            detail: format!("there is no database at {}", src.display()),
        });
    }
    // Read-write without create, as `sqlite3 .backup` opens it: a WAL
    // database's reader needs its -shm file, which a stopped daemon removed.
    let source = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(Duration::from_secs(10))?;
    check_version(&source, src)?;
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    let tmp = dest.with_file_name(format!(".{file_name}.partial-{}", std::process::id()));
    let result = (|| {
        let mut target = Connection::open(&tmp)?;
        {
            let b = rusqlite::backup::Backup::new(&source, &mut target)?;
            // -1: every page in one step, i.e. one read transaction on the
            // source, so the copy is a single snapshot. Busy or locked only
            // while another connection holds an exclusive lock; wait it out.
            loop {
                match b.step(-1)? {
                    rusqlite::backup::StepResult::Done => break,
                    rusqlite::backup::StepResult::More => continue,
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        // The copy keeps the source's WAL mode; fold it into one file.
        target.pragma_update(None, "journal_mode", "DELETE")?;
        let check: String = target.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(StoreError::Corrupt {
                what: "backup",
                detail: format!("the copy failed its integrity check: {check}"),
            });
        }
        let version: i64 = target.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let channels: i64 = target.query_row("SELECT count(*) FROM channels", [], |r| r.get(0))?;
        let messages: i64 = target.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
        drop(target);
        Ok((version, channels, messages))
    })();
    let (schema_version, channels, messages) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if schema_version > SCHEMA_VERSION {
        let _ = std::fs::remove_file(&tmp);
        return Err(StoreError::TooNew {
            path: src.to_path_buf(),
            found: schema_version,
            known: SCHEMA_VERSION,
        });
    }
    std::fs::rename(&tmp, dest).map_err(|e| io("moving the copy into place", e))?;
    let bytes = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    Ok(BackupReport {
        path: dest.to_path_buf(),
        bytes,
        schema_version,
        channels,
        messages,
    })
}
