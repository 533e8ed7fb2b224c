//! The store's checkpoints: RocketMQ's `checkpoint` (three timestamps, kept byte-compatible
//! for RocketMQ's tools and brokers) and our `checkpoint.offsets` (two CRC-protected slots,
//! written alternately, holding the offsets recovery relies on). Both are rewritten in place
//! with `pwrite` + `fdatasync`; a torn write damages at most the slot being written.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::error::{Error, Result};
use crate::fault::{guarded, FaultInjector, IoOp};
use crate::file::mmap;
use crate::format::{
    OffsetCheckpoint, TimestampCheckpoint, CHECKPOINT_FILE_SIZE, OFFSET_CHECKPOINT_FILE,
    OFFSET_CHECKPOINT_FILE_SIZE,
};

/// What the checkpoint files said at open.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LoadedCheckpoints {
    /// Our offsets, if a valid slot exists.
    pub offsets: Option<OffsetCheckpoint>,
    /// RocketMQ's timestamps (zero if the file is new or short).
    pub timestamps: TimestampCheckpoint,
}

#[derive(Debug)]
struct Files {
    timestamps: File,
    offsets: File,
    last: OffsetCheckpoint,
}

/// Writer of both checkpoint files.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    timestamps_path: PathBuf,
    offsets_path: PathBuf,
    files: Mutex<Files>,
    faults: FaultInjector,
}

fn open_sized(path: &Path, size: u64, faults: &FaultInjector) -> Result<(File, Vec<u8>, bool)> {
    let existed = path.exists();
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    };
    // Creating the file and giving it its size is one allocation.
    let file = if existed {
        open()
    } else {
        guarded(faults, IoOp::Allocate, || {
            let file = open()?;
            file.set_len(size)?;
            Ok(file)
        })
    }
    .map_err(|e| Error::io("create", path, e))?;
    let mut bytes = vec![0u8; size as usize];
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    let readable = len.min(size) as usize;
    file.read_exact_at(&mut bytes[..readable], 0)
        .map_err(|e| Error::io("read", path, e))?;
    if len < size {
        guarded(faults, IoOp::Allocate, || file.set_len(size))
            .map_err(|e| Error::io("extend", path, e))?;
    }
    if len < size || !existed {
        guarded(faults, IoOp::Flush, || file.sync_all())
            .map_err(|e| Error::io("fsync", path, e))?;
    }
    Ok((file, bytes, !existed))
}

impl Checkpoints {
    /// Opens (creating if needed) both files in `root`.
    pub(crate) fn open(
        root: &Path,
        faults: FaultInjector,
    ) -> Result<(Checkpoints, LoadedCheckpoints)> {
        let timestamps_path = root.join("checkpoint");
        let offsets_path = root.join(OFFSET_CHECKPOINT_FILE);
        let (timestamps, ts_bytes, created_ts) =
            open_sized(&timestamps_path, CHECKPOINT_FILE_SIZE, &faults)?;
        let (offsets, off_bytes, created_off) =
            open_sized(&offsets_path, OFFSET_CHECKPOINT_FILE_SIZE, &faults)?;
        if created_ts || created_off {
            mmap::sync_dir(root, &faults)?;
        }
        let loaded = LoadedCheckpoints {
            offsets: OffsetCheckpoint::newest(&off_bytes),
            timestamps: TimestampCheckpoint::decode(&ts_bytes).unwrap_or_default(),
        };
        if loaded.offsets.is_none() && off_bytes.iter().any(|&b| b != 0) {
            tracing::warn!(path = %offsets_path.display(), "both offset checkpoint slots are damaged; recovering from the first CommitLog file");
        }
        let last = loaded.offsets.unwrap_or_default();
        Ok((
            Checkpoints {
                timestamps_path,
                offsets_path,
                files: Mutex::new(Files {
                    timestamps,
                    offsets,
                    last,
                }),
                faults,
            },
            loaded,
        ))
    }

    /// Writes both checkpoints durably. Callers pass offsets only after flushing what they
    /// vouch for.
    pub(crate) fn write(
        &self,
        commit_log_durable: u64,
        dispatched_durable: u64,
        timestamps: TimestampCheckpoint,
    ) -> Result<()> {
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        let next = OffsetCheckpoint {
            sequence: files.last.sequence + 1,
            commit_log_durable,
            dispatched_durable,
        };
        guarded(&self.faults, IoOp::Write, || {
            files.offsets.write_all_at(&next.encode(), next.slot_pos())
        })
        .and_then(|()| guarded(&self.faults, IoOp::Flush, || files.offsets.sync_data()))
        .map_err(|e| Error::io("write checkpoint", &self.offsets_path, e))?;
        files.last = next;
        guarded(&self.faults, IoOp::Write, || {
            files.timestamps.write_all_at(&timestamps.encode(), 0)
        })
        .and_then(|()| guarded(&self.faults, IoOp::Flush, || files.timestamps.sync_data()))
        .map_err(|e| Error::io("write checkpoint", &self.timestamps_path, e))
    }

    /// The offsets last written.
    pub(crate) fn last(&self) -> OffsetCheckpoint {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_offsets_are_read_back_and_survive_a_torn_slot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cp, loaded) = Checkpoints::open(dir.path(), FaultInjector::default()).expect("open");
        assert!(loaded.offsets.is_none());
        let ts = TimestampCheckpoint {
            physic_msg_timestamp: 5,
            logics_msg_timestamp: 6,
            index_msg_timestamp: 7,
        };
        cp.write(100, 90, ts).expect("write");
        cp.write(200, 190, ts).expect("write");
        drop(cp);
        let (_, loaded) = Checkpoints::open(dir.path(), FaultInjector::default()).expect("reopen");
        let o = loaded.offsets.expect("valid");
        assert_eq!(
            (o.commit_log_durable, o.dispatched_durable, o.sequence),
            (200, 190, 2)
        );
        assert_eq!(loaded.timestamps, ts);
        assert_eq!(
            std::fs::metadata(dir.path().join("checkpoint"))
                .expect("stat")
                .len(),
            4096
        );
        // Garble the newest slot: the older one is used.
        let path = dir.path().join(OFFSET_CHECKPOINT_FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[o.slot_pos() as usize + 20] ^= 0x40;
        std::fs::write(&path, &bytes).expect("write");
        let (_, loaded) = Checkpoints::open(dir.path(), FaultInjector::default()).expect("reopen");
        assert_eq!(loaded.offsets.map(|o| o.commit_log_durable), Some(100));
    }
}
