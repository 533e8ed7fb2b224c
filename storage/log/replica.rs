//! The slave side of replication: raw CommitLog bytes from a master appended at an exact
//! offset. The master cuts its stream anywhere (at most 32 KiB a frame, never across a
//! file), so a record may arrive in pieces; a piece waits here until its record is whole.
//! Every record is decoded and CRC-checked before it is written, and it becomes visible
//! (to the dispatcher, readers and the offset a slave acknowledges) only whole.

use std::borrow::Cow;
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

/// What [`CommitLog::append_replicated`] left behind.
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
        let empty = self.queue.file_count() == 0 && st.writer.is_none();
        if empty && !bytes.is_empty() {
            if !offset.is_multiple_of(self.file_size) {
                return Err(Error::Replica(ReplicaError::Misaligned {
                    offset,
                    file_size: self.file_size,
                }));
            }
            st.next_file_offset = offset;
        }
        let expected = received_end(&st);
        if offset != expected && !(empty && bytes.is_empty()) {
            return Err(Error::Replica(ReplicaError::OffsetMismatch {
                expected,
                offered: offset,
            }));
        }
        let pending = std::mem::take(&mut st.replica.pending);
        let data: Cow<'_, [u8]> = if pending.is_empty() {
            Cow::Borrowed(bytes)
        } else {
            let mut all = pending;
            all.extend_from_slice(bytes);
            Cow::Owned(all)
        };
        let outcome = self.write_whole_records(&mut st, &data);
        match outcome {
            Ok(used) => {
                st.replica.pending = data[used..].to_vec();
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

    /// Writes the whole records (and blanks) at the start of `data`; returns how many
    /// bytes were used. The rest is the start of a record still in flight.
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
            let Some(writer) = st.writer.as_mut() else {
                return Ok(at);
            };
            let here = writer.file().start_offset() + writer.write_pos();
            let remaining = writer.remaining();
            let rest = &data[at..];
            let declared = u64::from(u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]));
            let magic = i32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
            if magic == format::BLANK_MAGIC_CODE {
                if declared != remaining {
                    return Err(Error::Replica(ReplicaError::Overrun {
                        offset: here,
                        size: declared,
                        remaining,
                    }));
                }
                // The blank's header is written when the file is finished.
                at += 8;
                st.replica.filler_left = Some(remaining - 8);
                continue;
            }
            if declared > u64::from(self.max_body) + format::MAX_RECORD_OVERHEAD {
                return Err(Error::Replica(ReplicaError::BadRecord {
                    offset: here,
                    error: RecordError::BadTotalSize(declared as i32),
                }));
            }
            if declared + format::END_FILE_MIN_BLANK_LENGTH > remaining {
                return Err(Error::Replica(ReplicaError::Overrun {
                    offset: here,
                    size: declared,
                    remaining,
                }));
            }
            let view = match format::decode_record(rest, true) {
                Ok(Decoded::Message(v)) => v,
                Err(RecordError::Truncated { .. }) if magic == format::MESSAGE_MAGIC_CODE => {
                    return Ok(at);
                }
                Ok(Decoded::Blank { .. }) => unreachable_blank(here)?,
                Err(error) => {
                    return Err(Error::Replica(ReplicaError::BadRecord {
                        offset: here,
                        error,
                    }))
                }
            };
            if view.physical_offset as u64 != here {
                return Err(Error::Replica(ReplicaError::MisplacedRecord {
                    offset: here,
                    stored: view.physical_offset as u64,
                }));
            }
            let len = view.total_size as usize;
            writer.append(len, |buf| buf.copy_from_slice(&rest[..len]));
            if let Some(newest) = st.newest_in_file.as_mut() {
                *newest = (*newest).max(view.store_timestamp);
            }
            if format::enters_consume_queue(view.sys_flag) {
                let slot = st.queue_table.slot(view.topic, view.queue_id as u32);
                *slot = (*slot).max(view.queue_offset as u64 + 1);
            }
            at += len;
        }
    }
}

/// The blank magic was checked before decoding; a blank here means the decoder and this
/// module disagree on the magic codes.
fn unreachable_blank<T>(offset: u64) -> Result<T> {
    Err(Error::Replica(ReplicaError::BadRecord {
        offset,
        error: RecordError::BadMagic(format::BLANK_MAGIC_CODE as u32),
    }))
}
