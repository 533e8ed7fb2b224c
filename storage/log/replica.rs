//! The slave side of replication: raw CommitLog bytes from a master appended at an exact
//! offset. The master cuts its stream anywhere (at most 32 KiB a frame, never across a
//! file), so a record may arrive in pieces; a piece waits here until its record is whole.
//! Every record is decoded and CRC-checked before it is written, and it becomes visible
//! (to the dispatcher, readers and the offset a slave acknowledges) only whole.

use std::sync::atomic::Ordering;

use super::{CommitLog, PutState};
use crate::error::{Error, ReplicaError, Result};
use crate::format::{self, Decoded, RecordError};
use crate::put::PhysicalOffset;

/// Received bytes not yet written, and where the received stream ends.
#[derive(Debug, Default)]
pub(super) struct ReplicaTail {
    /// Bytes of a record that has not arrived whole.
    pending: Vec<u8>,
    /// Inside an end-of-file blank: filler bytes still to come before the next file.
    filler_left: Option<u64>,
}

/// What [`MessageStore::append_replicated`](crate::MessageStore::append_replicated) left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaProgress {
    /// Everything below this offset is written, checked and visible.
    pub visible_end: PhysicalOffset,
    /// Where the next offered bytes must start (past `visible_end` by a partial record).
    pub received_end: PhysicalOffset,
}

/// Where the log's written data ends: the next record's offset.
fn written_end(st: &PutState) -> u64 {
    match &st.writer {
        Some(w) => w.file().start_offset() + w.write_pos(),
        None => st.next_file_offset,
    }
}

/// Where the received stream ends: past the written data by a partly received record or
/// the received part of an end-of-file blank.
fn received_end(st: &PutState) -> u64 {
    let tail = &st.replica;
    let in_blank = tail.filler_left.map_or(0, |left| {
        st.writer
            .as_ref()
            .map_or(0, |w| w.remaining().saturating_sub(left))
    });
    written_end(st) + in_blank + tail.pending.len() as u64
}

impl CommitLog {
    /// Drops a partly received record or blank (a new connection resends it) and returns
    /// where the visible data ends: the offset a slave asks its master for.
    pub(crate) fn replica_resume(&self) -> PhysicalOffset {
        let mut st = self.lock_put();
        st.replica = ReplicaTail::default();
        PhysicalOffset(written_end(&st))
    }

    /// Appends `bytes` received from a master as starting at `offset`.
    pub(crate) fn append_replicated(&self, offset: u64, bytes: &[u8]) -> Result<ReplicaProgress> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::ShutDown);
        }
        if self.group.is_poisoned() {
            return Err(Error::Poisoned);
        }
        let mut st = self.lock_put();
        // A log without a single byte (new, or its first file only made in advance) may
        // start anywhere on a file boundary: where the master's stream starts.
        let empty = st.replica.pending.is_empty()
            && st.replica.filler_left.is_none()
            && self.queue.holds_no_bytes();
        if empty && offset != received_end(&st) {
            if bytes.is_empty() {
                // A heartbeat: nothing to place yet.
                return Ok(ReplicaProgress {
                    visible_end: PhysicalOffset(written_end(&st)),
                    received_end: PhysicalOffset(received_end(&st)),
                });
            }
            self.restart_empty_at(&mut st, offset)?;
        }
        let expected = received_end(&st);
        if offset != expected {
            return Err(Error::Replica(ReplicaError::OffsetMismatch {
                expected,
                offered: offset,
            }));
        }
        // A record cut by the previous call continues here: join the two (the buffer's
        // allocation is kept from call to call).
        let mut pending = std::mem::take(&mut st.replica.pending);
        let outcome = if pending.is_empty() {
            self.write_whole_records(&mut st, bytes)
                .map(|used| pending.extend_from_slice(&bytes[used..]))
        } else {
            pending.extend_from_slice(bytes);
            self.write_whole_records(&mut st, &pending)
                .map(|used| drop(pending.drain(..used)))
        };
        match outcome {
            Ok(()) => {
                st.replica.pending = pending;
                Ok(ReplicaProgress {
                    visible_end: PhysicalOffset(written_end(&st)),
                    received_end: PhysicalOffset(received_end(&st)),
                })
            }
            Err(e) => {
                st.replica = ReplicaTail::default();
                Err(e)
            }
        }
    }

    /// Moves a log that holds no byte to start at `offset`: its (empty) files are retired
    /// first, so the names on disk never have a gap, and the next file is made at `offset`.
    fn restart_empty_at(&self, st: &mut PutState, offset: u64) -> Result<()> {
        if !offset.is_multiple_of(self.file_size) {
            return Err(Error::Replica(ReplicaError::Misaligned {
                offset,
                file_size: self.file_size,
            }));
        }
        // Renamed while still in the queue: if a rename fails, nothing has moved yet and the
        // next attempt retries (renaming again is a no-op for those already renamed).
        for file in self.queue.all() {
            file.retire()?;
        }
        st.writer = None;
        drop(self.queue.take_all());
        st.next_file_offset = offset;
        Ok(())
    }

    /// Writes the whole records (and blanks) at the start of `data`; returns how many
    /// bytes were used. The rest is the start of a record still in flight. Consecutive
    /// records are checked one by one and written in one run (one `pwrite`); a bad record
    /// ends the run, and the records before it are still written.
    fn write_whole_records(&self, st: &mut PutState, data: &[u8]) -> Result<usize> {
        let mut at = 0usize;
        loop {
            if let Some(left) = st.replica.filler_left {
                let take = left.min((data.len() - at) as u64);
                at += take as usize;
                if take < left {
                    st.replica.filler_left = Some(left - take);
                    return Ok(at);
                }
                st.replica.filler_left = None;
                self.finish_file(st);
            }
            if data.len() - at < 8 {
                return Ok(at);
            }
            if st.writer.is_none() && !self.open_next_file(st)? {
                return Err(Error::io(
                    "allocate",
                    &self.dir,
                    std::io::Error::other("no CommitLog file came from the allocator in time"),
                ));
            }
            let (run, next) = self.check_run(st, &data[at..]);
            if run.len > 0 {
                write_run(st, &data[at..at + run.len], &run)?;
                at += run.len;
            }
            match next {
                RunEnd::NeedMore => return Ok(at),
                RunEnd::Blank { filler } => {
                    // The blank's header is written when the file is finished.
                    at += 8;
                    st.replica.filler_left = Some(filler);
                }
                RunEnd::Bad(e) => return Err(Error::Replica(e)),
            }
        }
    }

    /// Checks the records at the start of `rest` (which starts at the active file's write
    /// position) until one is incomplete, a blank or bad.
    fn check_run(&self, st: &PutState, rest: &[u8]) -> (Run, RunEnd) {
        let mut run = Run::default();
        let Some(writer) = st.writer.as_ref() else {
            return (run, RunEnd::NeedMore);
        };
        let file_start = writer.file().start_offset();
        let pos = writer.write_pos();
        loop {
            let here = file_start + pos + run.len as u64;
            let remaining = writer.remaining() - run.len as u64;
            let bytes = &rest[run.len..];
            if bytes.len() < 8 {
                return (run, RunEnd::NeedMore);
            }
            let declared = u64::from(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
            let magic = i32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            if magic == format::BLANK_MAGIC_CODE {
                if declared != remaining {
                    return (
                        run,
                        RunEnd::Bad(ReplicaError::Overrun {
                            offset: here,
                            size: declared,
                            remaining,
                        }),
                    );
                }
                return (
                    run,
                    RunEnd::Blank {
                        filler: remaining - 8,
                    },
                );
            }
            if declared > u64::from(self.max_body) + format::MAX_RECORD_OVERHEAD {
                let error = RecordError::BadTotalSize(declared as i32);
                return (
                    run,
                    RunEnd::Bad(ReplicaError::BadRecord {
                        offset: here,
                        error,
                    }),
                );
            }
            if declared + format::END_FILE_MIN_BLANK_LENGTH > remaining {
                return (
                    run,
                    RunEnd::Bad(ReplicaError::Overrun {
                        offset: here,
                        size: declared,
                        remaining,
                    }),
                );
            }
            let view = match format::decode_record(bytes, true) {
                Ok(Decoded::Message(v)) => v,
                Err(RecordError::Truncated { .. }) if magic == format::MESSAGE_MAGIC_CODE => {
                    return (run, RunEnd::NeedMore);
                }
                Ok(Decoded::Blank { .. }) => {
                    let error = RecordError::BadMagic(format::BLANK_MAGIC_CODE as u32);
                    return (
                        run,
                        RunEnd::Bad(ReplicaError::BadRecord {
                            offset: here,
                            error,
                        }),
                    );
                }
                Err(error) => {
                    return (
                        run,
                        RunEnd::Bad(ReplicaError::BadRecord {
                            offset: here,
                            error,
                        }),
                    )
                }
            };
            if view.physical_offset as u64 != here {
                let stored = view.physical_offset as u64;
                return (
                    run,
                    RunEnd::Bad(ReplicaError::MisplacedRecord {
                        offset: here,
                        stored,
                    }),
                );
            }
            run.newest = run.newest.max(view.store_timestamp);
            if format::enters_consume_queue(view.sys_flag) {
                run.queue_ends.push((
                    view.topic.to_owned(),
                    view.queue_id as u32,
                    view.queue_offset as u64 + 1,
                ));
            }
            run.len += view.total_size as usize;
        }
    }
}

/// Writes a checked run at the active file's write position and publishes it.
fn write_run(st: &mut PutState, bytes: &[u8], run: &Run) -> Result<()> {
    let Some(writer) = st.writer.as_mut() else {
        return Ok(());
    };
    writer.write_through_fd(bytes)?;
    if let Some(newest) = st.newest_in_file.as_mut() {
        *newest = (*newest).max(run.newest);
    }
    for (topic, queue_id, end) in &run.queue_ends {
        let slot = st.queue_table.slot(topic, *queue_id);
        *slot = (*slot).max(*end);
    }
    Ok(())
}

/// Consecutive checked records at the write position.
#[derive(Debug)]
struct Run {
    len: usize,
    newest: i64,
    /// Per record entering a consume queue: its topic, queue and next queue offset.
    queue_ends: Vec<(String, u32, u64)>,
}

impl Default for Run {
    fn default() -> Self {
        Run {
            len: 0,
            newest: i64::MIN,
            queue_ends: Vec::new(),
        }
    }
}

/// Why a run of records ended.
#[derive(Debug)]
enum RunEnd {
    /// The next record has not arrived whole.
    NeedMore,
    /// An end-of-file blank with this many filler bytes after its 8-byte header.
    Blank { filler: u64 },
    /// Bytes that are not a valid record here.
    Bad(ReplicaError),
}
