//! The offline check and opening a store judge a damaged CommitLog the same way: for
//! arbitrary damage (zeroed ranges, truncation to zeros, bit flips, garbage, a valid record
//! copied elsewhere), on a cleanly closed store, on a crashed one whose checkpoint lags
//! behind its data, and on one without a checkpoint, in both the default and the strict
//! recovery mode, `verify_store`'s `log_end` says exactly what opening then does: opens as
//! is (Clean), cuts at that offset (TornTail), or refuses at that offset (Corrupt).

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mqstore::format::{self, OffsetCheckpoint, OFFSET_CHECKPOINT_FILE};
use mqstore::verify::{verify_store, LogEnd};
use mqstore::{Error, Message, MessageStore, RecoveryMode, StoreConfig};
use proptest::prelude::*;

const FILE_SIZE: u64 = 64 * 1024;

fn config(root: &Path, mode: RecoveryMode) -> StoreConfig {
    let mut c = StoreConfig::new(root);
    c.mapped_file_size_commit_log = FILE_SIZE;
    c.max_message_size = 4096;
    c.recovery_mode = mode;
    // What opening itself does with each damage (not the background check's deferral).
    c.check_tail_in_background = false;
    common::small_derived_files(&mut c);
    c
}

/// A cleanly closed store of about two and a half CommitLog files, and its records.
fn base() -> (&'static Path, &'static [common::OnDisk]) {
    static BASE: OnceLock<(tempfile::TempDir, Vec<common::OnDisk>)> = OnceLock::new();
    let (dir, records) = BASE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MessageStore::open(config(dir.path(), RecoveryMode::TolerateTailCorruption))
            .expect("open");
        for i in 0..200u32 {
            let body = vec![b'a' + (i % 26) as u8; 200 + (i as usize * 37) % 700];
            let msg = Message::new("verdict", i % 3, body).with_property("KEYS", &format!("k{i}"));
            assert!(store.put(&msg).expect("put").status.is_stored());
        }
        store.shutdown().expect("shutdown");
        let records = common::scan_commit_log(dir.path(), FILE_SIZE);
        (dir, records)
    });
    (dir.path(), records)
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    /// As shut down: the checkpoint vouches for everything.
    Clean,
    /// A crash: the abort file is there and the checkpoint vouches for a prefix only.
    Lagging,
    /// No checkpoint at all.
    NoCheckpoint,
}

#[derive(Debug, Clone)]
enum Damage {
    Zero { at: u64, len: u64 },
    ZeroToFileEnd { at: u64 },
    Flip { at: u64, bit: u8 },
    Garbage { at: u64, bytes: Vec<u8> },
    CopyRecord { record: usize, to: u64 },
}

fn damage() -> impl Strategy<Value = Damage> {
    // Offsets up to a little past the data (which ends inside the third file).
    let at = 0..(3 * FILE_SIZE);
    prop_oneof![
        (at.clone(), 1..2000u64).prop_map(|(at, len)| Damage::Zero { at, len }),
        at.clone().prop_map(|at| Damage::ZeroToFileEnd { at }),
        (at.clone(), 0..8u8).prop_map(|(at, bit)| Damage::Flip { at, bit }),
        (at.clone(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, bytes)| Damage::Garbage { at, bytes }),
        (0..200usize, at).prop_map(|(record, to)| Damage::CopyRecord { record, to }),
    ]
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Clean),
        Just(Shape::Lagging),
        Just(Shape::NoCheckpoint)
    ]
}

fn mode() -> impl Strategy<Value = RecoveryMode> {
    prop_oneof![
        Just(RecoveryMode::TolerateTailCorruption),
        Just(RecoveryMode::AbsoluteConsistency)
    ]
}

fn log_file(root: &Path, offset: u64) -> PathBuf {
    root.join("commitlog")
        .join(format::file_name(offset - offset % FILE_SIZE))
}

/// Writes `bytes` at global CommitLog offset `at`, clipped to that file.
fn write_at(root: &Path, at: u64, bytes: &[u8]) {
    let path = log_file(root, at);
    let Ok(mut file) = std::fs::read(&path) else {
        return; // past the last file
    };
    let pos = (at % FILE_SIZE) as usize;
    let n = bytes.len().min(file.len() - pos);
    file[pos..pos + n].copy_from_slice(&bytes[..n]);
    std::fs::write(&path, &file).expect("write");
}

fn apply(root: &Path, records: &[common::OnDisk], damage: &Damage) {
    match damage {
        Damage::Zero { at, len } => write_at(root, *at, &vec![0; *len as usize]),
        Damage::ZeroToFileEnd { at } => {
            write_at(root, *at, &vec![0; (FILE_SIZE - at % FILE_SIZE) as usize]);
        }
        Damage::Flip { at, bit } => {
            let path = log_file(root, *at);
            if let Ok(file) = std::fs::read(&path) {
                let old = file[(at % FILE_SIZE) as usize];
                write_at(root, *at, &[old ^ (1 << bit)]);
            }
        }
        Damage::Garbage { at, bytes } => write_at(root, *at, bytes),
        Damage::CopyRecord { record, to } => {
            let r = &records[record % records.len()];
            let file = std::fs::read(log_file(root, r.offset)).expect("read");
            let pos = (r.offset % FILE_SIZE) as usize;
            write_at(root, *to, &file[pos..pos + r.size as usize]);
        }
    }
}

fn set_shape(root: &Path, records: &[common::OnDisk], shape: Shape) {
    let ckpt = root.join(OFFSET_CHECKPOINT_FILE);
    match shape {
        Shape::Clean => {}
        Shape::NoCheckpoint => std::fs::remove_file(&ckpt).expect("remove checkpoint"),
        Shape::Lagging => {
            let durable = records[records.len() * 2 / 5].offset;
            let slot = OffsetCheckpoint {
                sequence: u64::MAX / 2,
                commit_log_durable: durable,
                dispatched_durable: durable,
            };
            let mut file = vec![0u8; format::OFFSET_CHECKPOINT_FILE_SIZE as usize];
            let pos = slot.slot_pos() as usize;
            file[pos..pos + format::OFFSET_CHECKPOINT_SLOT_LEN].copy_from_slice(&slot.encode());
            std::fs::write(&ckpt, file).expect("write checkpoint");
            std::fs::write(root.join("abort"), b"").expect("abort file");
        }
    }
}

fn global(path: &Path, pos: u64) -> u64 {
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    format::parse_file_name(&name).expect("log file name") + pos
}

fn check(shape: Shape, mode: RecoveryMode, damages: &[Damage]) -> Result<String, TestCaseError> {
    let (base_root, records) = base();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    common::copy_dir(base_root, &root);
    set_shape(&root, records, shape);
    for d in damages {
        apply(&root, records, d);
    }
    let cfg = config(&root, mode);
    let report = verify_store(&cfg, &mut |_, _| {}).expect("verify runs");
    let opened = MessageStore::open(cfg);
    let case = format!(
        "{shape:?} {mode:?} {damages:?}: verify {:?}",
        report.log_end
    );
    match (report.log_end, opened) {
        (LogEnd::Clean, Ok(store)) => {
            let rep = store.recovery_report();
            prop_assert!(
                rep.truncated.is_none(),
                "{case}; open cut {:?}",
                rep.truncated
            );
            prop_assert_eq!(store.max_offset().0, report.valid_end, "{}", case);
            store.shutdown().expect("shutdown");
            Ok("Clean".into())
        }
        (LogEnd::TornTail { offset }, Ok(store)) => {
            let rep = store.recovery_report();
            let cut = rep
                .truncated
                .as_ref()
                .map(|(path, pos, _)| global(path, *pos));
            prop_assert_eq!(cut, Some(offset), "{}", case);
            prop_assert_eq!(store.max_offset().0, offset, "{}", case);
            store.shutdown().expect("shutdown");
            Ok("TornTail".into())
        }
        (
            LogEnd::Corrupt { offset, reason },
            Err(Error::Corrupted {
                path, offset: pos, ..
            }),
        ) => {
            prop_assert_eq!(global(&path, pos), offset, "{}", case);
            Ok(format!("Corrupt({reason:?})"))
        }
        (_, Ok(store)) => {
            let rep = store.recovery_report().clone();
            store.shutdown().expect("shutdown");
            Err(TestCaseError::fail(format!(
                "{case}; open succeeded: cut {:?}",
                rep.truncated
            )))
        }
        (_, Err(e)) => Err(TestCaseError::fail(format!("{case}; open failed: {e}"))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn verify_and_recovery_agree_on_every_damage(
        shape in shape(),
        mode in mode(),
        damages in prop::collection::vec(damage(), 1..3),
    ) {
        check(shape, mode, &damages)?;
    }
}

/// Each verdict the property test compares is reached by some damage (so the comparison
/// is not vacuous).
#[test]
fn every_verdict_occurs() {
    let (_, records) = base();
    let mid = records[records.len() / 2].offset;
    let late = records[records.len() * 4 / 5].offset;
    let tolerate = RecoveryMode::TolerateTailCorruption;
    let cases = [
        (Shape::Clean, tolerate, vec![], "Clean"),
        (
            Shape::Lagging,
            tolerate,
            vec![Damage::Flip {
                at: late + 9,
                bit: 3,
            }],
            "TornTail",
        ),
        (
            Shape::Clean,
            tolerate,
            vec![Damage::Flip {
                at: mid + 9,
                bit: 3,
            }],
            "Corrupt(BelowDurable)",
        ),
        (
            Shape::NoCheckpoint,
            tolerate,
            vec![Damage::Flip {
                at: mid + 9,
                bit: 3,
            }],
            "Corrupt(RecordsFollow)",
        ),
        (
            Shape::Lagging,
            tolerate,
            vec![Damage::CopyRecord {
                record: 0,
                to: late,
            }],
            "Corrupt(Foreign)",
        ),
        (
            Shape::Lagging,
            RecoveryMode::AbsoluteConsistency,
            vec![Damage::Flip {
                at: late + 9,
                bit: 3,
            }],
            "Corrupt(Strict)",
        ),
    ];
    for (shape, mode, damages, want) in cases {
        let got = check(shape, mode, &damages).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, want, "{shape:?} {mode:?} {damages:?}");
    }
}
