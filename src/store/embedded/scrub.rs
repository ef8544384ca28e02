//! Removal of erased bytes from the database file.
//!
//! redb frees the pages of deleted records but does not overwrite them, so an erased value can
//! remain readable in the file. The scrub therefore copies every live record into a new file,
//! commits it durably, renames it over the old file, and overwrites the old file's blocks with
//! zeros before closing it. The erased records were never written to the new file.
//!
//! Crash safety: erasure sets a pending flag in the same transaction that deletes the records,
//! and the copy leaves that flag out. A crash before the rename leaves the old file with the
//! flag set, and opening the store runs the scrub again.
//!
//! NOTE: zeroing the old file overwrites its blocks through the file system. On copy-on-write
//! file systems and on SSDs the old physical blocks may survive until the device reuses them.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableHandle};

use super::tables::{self, backend, META, SCRUB_PENDING};
use super::writer::SharedDb;
use super::StoreFile;
use crate::store::StoreError;

/// How long the scrub waits for readers of the old file before it zeroes the file anyway.
const READER_WAIT: Duration = Duration::from_secs(10);

pub fn scrub_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".scrub");
    PathBuf::from(name)
}

/// Returns whether erased bytes may still be in the file.
pub fn is_pending(db: &Database) -> Result<bool, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
        Err(error) => return Err(backend(error)),
    };
    let pending = meta.get(SCRUB_PENDING).map_err(backend)?.is_some();
    Ok(pending)
}

/// Rewrites the file without free pages when a scrub is pending. Runs on the writer thread, so
/// no write can happen meanwhile.
pub fn run(db: &SharedDb, file: &StoreFile) -> Result<(), StoreError> {
    let path = file.path.as_path();
    let old = db.read().unwrap_or_else(|e| e.into_inner()).clone();
    if !is_pending(&old)? {
        return Ok(());
    }
    let started = Instant::now();
    let copy_path = scrub_path(path);
    remove_if_present(&copy_path)?;
    let copy = file.create(&copy_path)?;
    let records = copy_live_records(&old, &copy)?;

    // Keep a handle on the old file so its blocks can be zeroed after the rename.
    let old_file = File::options().write(true).open(path).map_err(io_error)?;
    std::fs::rename(&copy_path, path).map_err(io_error)?;
    sync_parent(path)?;
    *db.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(copy);

    let readers_done = wait_for_readers(old);
    zero_file(&old_file)?;
    tracing::info!(
        records,
        elapsed_ms = started.elapsed().as_millis() as u64,
        readers_done,
        "store file rewritten without erased records"
    );
    Ok(())
}

/// Copies every record except the pending flag and returns how many it copied.
fn copy_live_records(from: &Database, to: &Database) -> Result<u64, StoreError> {
    let read = from.begin_read().map_err(backend)?;
    let mut write = to.begin_write().map_err(backend)?;
    write
        .set_durability(Durability::Immediate)
        .map_err(backend)?;
    let mut records = 0;
    for definition in tables::ALL {
        let source = match read.open_table(definition) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => continue,
            Err(error) => return Err(backend(error)),
        };
        let mut target = write.open_table(definition).map_err(backend)?;
        for entry in source.iter().map_err(backend)? {
            let (key, value) = entry.map_err(backend)?;
            if definition.name() == META.name() && key.value() == SCRUB_PENDING {
                continue;
            }
            target.insert(key.value(), value.value()).map_err(backend)?;
            records += 1;
        }
    }
    write.commit().map_err(backend)?;
    Ok(records)
}

/// Drops the last handle on the old database once in-flight readers have released it.
/// Returns false when readers still held it after `READER_WAIT`.
fn wait_for_readers(old: Arc<Database>) -> bool {
    let deadline = Instant::now() + READER_WAIT;
    let mut old = old;
    loop {
        match Arc::try_unwrap(old) {
            Ok(database) => {
                drop(database);
                return true;
            }
            Err(shared) if Instant::now() < deadline => {
                old = shared;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => {
                tracing::warn!("store readers still hold the old file; zeroing it anyway");
                return false;
            }
        }
    }
}

fn zero_file(file: &File) -> Result<(), StoreError> {
    let length = file.metadata().map_err(io_error)?.len();
    let zeros = vec![0u8; 1 << 20];
    let mut writer = file;
    let mut written = 0u64;
    while written < length {
        let chunk = (length - written).min(zeros.len() as u64) as usize;
        writer.write_all(&zeros[..chunk]).map_err(io_error)?;
        written += chunk as u64;
    }
    file.sync_all().map_err(io_error)
}

fn sync_parent(path: &Path) -> Result<(), StoreError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error)
}

pub fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_error(error)),
    }
}

fn io_error(error: std::io::Error) -> StoreError {
    StoreError::Backend(format!("store file: {error}"))
}
