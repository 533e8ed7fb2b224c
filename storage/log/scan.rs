//! The scan that finds where a CommitLog's valid data ends, and the one rule that says
//! what a bad spot in it means: the end of the data, a torn tail to cut, a stretch to skip,
//! or corruption that must not be cut away silently.
//!
//! Opening a store ([`super::CommitLog::open`]) acts on the verdict; the offline check
//! (`verify`) reports it. Both run [`scan_log`], so they cannot disagree about the same
//! bytes.

use std::borrow::Cow;

use crate::config::RecoveryMode;
use crate::error::{CorruptionKind, Result};
use crate::format::{self, Decoded, RecordError, RecordView};

/// The CommitLog files a scan reads, oldest first: mapped files when a store opens, plain
/// reads offline.
pub(crate) trait LogFiles {
    /// How many files there are.
    fn count(&self) -> usize;
    /// Global offset of file `i`'s first byte.
    fn start(&self, i: usize) -> u64;
    /// The configured file size: a file's end BLANK must reach it.
    fn size(&self, i: usize) -> u64;
    /// File `i`'s bytes from its start.
    fn bytes(&self, i: usize) -> Result<Cow<'_, [u8]>>;
}

/// Why a CommitLog is corrupt rather than torn at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorruptReason {
    /// The damage lies below the offset the checkpoint says was made durable.
    BelowDurable,
    /// Without a checkpoint: valid records follow the damage, so it is in the middle.
    RecordsFollow,
    /// A CRC-valid record that names another position: stale or misdirected data, never a
    /// torn write.
    Foreign,
    /// `AbsoluteConsistency` accepts nothing but zeros at the end of the data.
    Strict,
}

impl std::fmt::Display for CorruptReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CorruptReason::BelowDurable => "below the point the checkpoint says was durable",
            CorruptReason::RecordsFollow => "valid records follow it",
            CorruptReason::Foreign => "a valid record that belongs elsewhere",
            CorruptReason::Strict => "AbsoluteConsistency tolerates no damaged tail",
        })
    }
}

/// How the valid data of a CommitLog ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogEnd {
    /// At zeros, or at the end of the last file.
    #[default]
    Clean,
    /// At a damaged record past the durable point: recovery cuts it off.
    TornTail {
        /// Global offset of the damaged record.
        offset: u64,
    },
    /// At damage that cutting would turn into lost acknowledged data: recovery refuses to
    /// open.
    Corrupt {
        /// Global offset of the damage.
        offset: u64,
        /// Why it is not a torn tail.
        reason: CorruptReason,
    },
}

/// What a scan met where the records stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// Unwritten (all-zero header) space.
    Zero,
    /// Bytes that are not a record at this position.
    Invalid(CorruptionKind),
}

impl Found {
    pub(crate) fn kind(&self) -> CorruptionKind {
        match self {
            Found::Zero => CorruptionKind::Record(RecordError::ZeroHeader),
            Found::Invalid(k) => k.clone(),
        }
    }
}

/// The verdict on a spot where the records stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The end of the data.
    End,
    /// A torn tail: the data ends here and the rest is cut.
    TornTail,
    /// `TolerateAnyCorruption`: go on at the next valid record (file index, position).
    Skip(usize, u64),
    /// Corruption.
    Corrupt(CorruptReason),
}

/// The rule. `at`: global offset of the spot; `later`: the next valid record after it
/// (asked only when the answer depends on it); `durable`: the checkpoint's durable offset.
pub(crate) fn judge(
    found: &Found,
    at: u64,
    later: &mut dyn FnMut() -> Result<Option<(usize, u64)>>,
    durable: Option<u64>,
    mode: RecoveryMode,
) -> Result<Verdict> {
    let needs_later = mode != RecoveryMode::TolerateTailCorruption || durable.is_none();
    let later = if needs_later { later()? } else { None };
    if mode == RecoveryMode::TolerateAnyCorruption {
        if let Some((i, pos)) = later {
            return Ok(Verdict::Skip(i, pos));
        }
    }
    let zero = *found == Found::Zero;
    if mode == RecoveryMode::AbsoluteConsistency && (!zero || later.is_some()) {
        return Ok(Verdict::Corrupt(CorruptReason::Strict));
    }
    if matches!(
        found,
        Found::Invalid(CorruptionKind::MisplacedRecord { .. })
    ) {
        return Ok(Verdict::Corrupt(CorruptReason::Foreign));
    }
    if let Some(d) = durable {
        if at < d {
            return Ok(Verdict::Corrupt(CorruptReason::BelowDurable));
        }
    } else if later.is_some() {
        return Ok(Verdict::Corrupt(CorruptReason::RecordsFollow));
    }
    Ok(if zero {
        Verdict::End
    } else {
        Verdict::TornTail
    })
}

/// What the scan found.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Where the valid data ends: file index and position in it (the file's size when it
    /// was read to its end).
    pub end: (usize, u64),
    /// How it ends.
    pub log_end: LogEnd,
    /// What lies at the end when it is not clean (or zeros past the durable point).
    pub found: Option<Found>,
    /// Stretches `[from, to)` skipped in `TolerateAnyCorruption` mode.
    pub gaps: Vec<(u64, u64)>,
    /// Valid records seen.
    pub records: u64,
}

/// Where and how to scan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanRules {
    /// First offset to read (a record or file boundary); bytes below it are trusted.
    pub from: u64,
    /// Everything below this offset was made durable (the offset checkpoint), if known.
    pub durable: Option<u64>,
    /// What to do with a bad record.
    pub mode: RecoveryMode,
    /// Check body and property CRCs.
    pub check_crc: bool,
}

/// Reads the records from `rules.from` on, hands each valid one to `visit` in order, and
/// judges the first spot where they stop. `None` when there are no files.
pub(crate) fn scan_log<F: LogFiles + ?Sized>(
    files: &F,
    rules: &ScanRules,
    visit: &mut dyn FnMut(u64, &RecordView<'_>) -> Result<()>,
) -> Result<Option<Scan>> {
    let count = files.count();
    if count == 0 {
        return Ok(None);
    }
    let mut scan = Scan {
        end: (count - 1, files.size(count - 1)),
        log_end: LogEnd::Clean,
        found: None,
        gaps: Vec::new(),
        records: 0,
    };
    let Some(mut i) = (0..count).find(|&i| files.start(i) + files.size(i) > rules.from) else {
        // Everything lies below the scan start: the last file is full.
        return Ok(Some(scan));
    };
    let mut pos = rules.from.saturating_sub(files.start(i));
    loop {
        let bytes = files.bytes(i)?;
        let stop = scan_file(
            &bytes,
            files.start(i),
            files.size(i),
            pos,
            rules.check_crc,
            visit,
            &mut scan.records,
        )?;
        let Some((stop_pos, found)) = stop else {
            if i + 1 < count {
                i += 1;
                pos = 0;
                continue;
            }
            scan.end = (i, files.size(i));
            return Ok(Some(scan));
        };
        let at = files.start(i) + stop_pos;
        let mut later = || later_valid_record(files, i, &bytes, stop_pos);
        let verdict = judge(&found, at, &mut later, rules.durable, rules.mode)?;
        scan.end = (i, stop_pos);
        match verdict {
            Verdict::Skip(ni, npos) => {
                let resume = files.start(ni) + npos;
                tracing::error!(from = at, to = resume, kind = %found.kind(), "skipping a corrupt stretch of the commit log");
                scan.gaps.push((at, resume));
                i = ni;
                pos = npos;
                continue;
            }
            Verdict::End => {
                scan.found = Some(found);
                scan.log_end = LogEnd::Clean;
            }
            Verdict::TornTail => {
                scan.found = Some(found);
                scan.log_end = LogEnd::TornTail { offset: at };
            }
            Verdict::Corrupt(reason) => {
                scan.found = Some(found);
                scan.log_end = LogEnd::Corrupt { offset: at, reason };
            }
        }
        return Ok(Some(scan));
    }
}

/// Validates one file's records from `pos`; the position and what was found where they
/// stop, or `None` when the file was read to its end (a last record or an end BLANK).
fn scan_file(
    bytes: &[u8],
    start: u64,
    size: u64,
    mut pos: u64,
    check_crc: bool,
    visit: &mut dyn FnMut(u64, &RecordView<'_>) -> Result<()>,
    records: &mut u64,
) -> Result<Option<(u64, Found)>> {
    loop {
        let Some(rest) = usize::try_from(pos)
            .ok()
            .and_then(|p| bytes.get(p..))
            .filter(|r| !r.is_empty())
        else {
            return Ok(None);
        };
        match format::decode_record(rest, check_crc) {
            Ok(Decoded::Blank { len }) if pos + u64::from(len) == size => return Ok(None),
            Ok(Decoded::Blank { len }) => {
                let kind = CorruptionKind::Record(RecordError::BadTotalSize(len as i32));
                return Ok(Some((pos, Found::Invalid(kind))));
            }
            Ok(Decoded::Message(v)) => {
                let at = start + pos;
                if v.physical_offset as u64 != at {
                    let kind = CorruptionKind::MisplacedRecord {
                        stored: v.physical_offset as u64,
                    };
                    return Ok(Some((pos, Found::Invalid(kind))));
                }
                visit(at, &v)?;
                *records += 1;
                pos += u64::from(v.total_size);
            }
            Err(RecordError::ZeroHeader) => return Ok(Some((pos, Found::Zero))),
            Err(e) => return Ok(Some((pos, Found::Invalid(CorruptionKind::Record(e))))),
        }
    }
}

/// The first valid record after a bad spot at `pos` of file `index`: searched in the rest
/// of that file (at positions holding the message magic), else at the start of a later file.
fn later_valid_record<F: LogFiles + ?Sized>(
    files: &F,
    index: usize,
    bytes: &[u8],
    pos: u64,
) -> Result<Option<(usize, u64)>> {
    let start = files.start(index);
    let magic = format::MESSAGE_MAGIC_CODE.to_be_bytes();
    let Ok(mut at) = usize::try_from(pos + 1) else {
        return Ok(None);
    };
    while let Some(found) = bytes
        .get(at + 4..)
        .and_then(|rest| rest.windows(4).position(|w| w == magic))
    {
        let p = at + found;
        if valid_record_at(bytes, start, p as u64) {
            return Ok(Some((index, p as u64)));
        }
        at = p + 1;
    }
    for i in index + 1..files.count() {
        if valid_record_at(&files.bytes(i)?, files.start(i), 0) {
            return Ok(Some((i, 0)));
        }
    }
    Ok(None)
}

fn valid_record_at(bytes: &[u8], start: u64, pos: u64) -> bool {
    let rest = usize::try_from(pos)
        .ok()
        .and_then(|p| bytes.get(p..))
        .unwrap_or(&[]);
    matches!(
        format::decode_record(rest, true),
        Ok(Decoded::Message(v)) if v.physical_offset as u64 == start + pos
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unnecessary_wraps)] // the shape judge asks for
    fn never() -> Result<Option<(usize, u64)>> {
        Ok(None)
    }

    #[allow(clippy::unnecessary_wraps)]
    fn after() -> Result<Option<(usize, u64)>> {
        Ok(Some((1, 0)))
    }

    fn bad() -> Found {
        Found::Invalid(CorruptionKind::Record(RecordError::BadMagic(7)))
    }

    #[test]
    fn zeros_past_the_durable_point_end_the_data() {
        let v = judge(
            &Found::Zero,
            100,
            &mut never,
            Some(100),
            RecoveryMode::TolerateTailCorruption,
        );
        assert_eq!(v.expect("judged"), Verdict::End);
    }

    #[test]
    fn damage_past_the_durable_point_is_a_torn_tail_even_with_records_after_it() {
        let v = judge(
            &bad(),
            100,
            &mut after,
            Some(50),
            RecoveryMode::TolerateTailCorruption,
        );
        assert_eq!(v.expect("judged"), Verdict::TornTail);
    }

    #[test]
    fn anything_below_the_durable_point_is_corruption() {
        for found in [Found::Zero, bad()] {
            let v = judge(
                &found,
                10,
                &mut never,
                Some(50),
                RecoveryMode::TolerateTailCorruption,
            );
            assert_eq!(
                v.expect("judged"),
                Verdict::Corrupt(CorruptReason::BelowDurable)
            );
        }
    }

    #[test]
    fn without_a_checkpoint_records_after_the_damage_make_it_corruption() {
        let v = judge(
            &bad(),
            10,
            &mut after,
            None,
            RecoveryMode::TolerateTailCorruption,
        );
        assert_eq!(
            v.expect("judged"),
            Verdict::Corrupt(CorruptReason::RecordsFollow)
        );
        let v = judge(
            &bad(),
            10,
            &mut never,
            None,
            RecoveryMode::TolerateTailCorruption,
        );
        assert_eq!(v.expect("judged"), Verdict::TornTail);
    }

    #[test]
    fn a_record_in_the_wrong_place_is_foreign_data() {
        let found = Found::Invalid(CorruptionKind::MisplacedRecord { stored: 0 });
        let v = judge(
            &found,
            100,
            &mut never,
            Some(50),
            RecoveryMode::TolerateTailCorruption,
        );
        assert_eq!(v.expect("judged"), Verdict::Corrupt(CorruptReason::Foreign));
    }

    #[test]
    fn strict_mode_accepts_only_zeros_and_tolerant_mode_skips() {
        let v = judge(
            &bad(),
            100,
            &mut never,
            Some(50),
            RecoveryMode::AbsoluteConsistency,
        );
        assert_eq!(v.expect("judged"), Verdict::Corrupt(CorruptReason::Strict));
        let v = judge(
            &Found::Zero,
            100,
            &mut never,
            Some(50),
            RecoveryMode::AbsoluteConsistency,
        );
        assert_eq!(v.expect("judged"), Verdict::End);
        let v = judge(
            &bad(),
            10,
            &mut after,
            Some(50),
            RecoveryMode::TolerateAnyCorruption,
        );
        assert_eq!(v.expect("judged"), Verdict::Skip(1, 0));
    }
}
