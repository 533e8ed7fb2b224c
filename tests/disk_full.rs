//! A really full disk: the store runs on a tiny
//! tmpfs, fills it, gets a typed `DiskFull` (never SIGBUS), keeps every earlier message,
//! and resumes once space is freed. Needs permission to mount; prints a notice and passes
//! vacuously where mounting is not allowed (the fault-injection suite covers the same path).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use mqstore::{Error, FlushMode, Message, PhysicalOffset, PutStatus};

const FILE_SIZE: u64 = 64 * 1024;

struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(dir.to_owned()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_disk_is_a_typed_error_and_appends_resume_after_space_is_freed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(_mount) = Mount::tmpfs(dir.path(), "1m") else {
        assert!(
            std::env::var_os("MQSTORE_REQUIRE_ROOT_TESTS").is_none(),
            "the full-disk test is required here but cannot mount a tmpfs"
        );
        eprintln!(
            "SKIPPED full_disk test: cannot mount a tmpfs here (needs root); see tests/fault.rs"
        );
        return;
    };
    let root = dir.path().join("store");
    // Leave room for a few CommitLog files only.
    let filler = dir.path().join("filler");
    std::fs::write(&filler, vec![1u8; 1024 * 1024 - 5 * FILE_SIZE as usize]).expect("filler");
    let store = common::open_small(&root, FILE_SIZE, 4096, FlushMode::Async);
    let mut acked = Vec::new();
    let mut full = None;
    for i in 0..10_000u32 {
        match store.put(&Message::new("df", 0, vec![(i % 251) as u8; 1000])) {
            Ok(r) => {
                assert_eq!(r.status, PutStatus::PutOk);
                acked.push(r.appended.expect("stored").physical_offset);
            }
            Err(e) => {
                full = Some(e);
                break;
            }
        }
    }
    let e = full.expect("the disk filled up");
    assert!(
        matches!(e, Error::DiskFull { .. }),
        "typed error, got {e:?}"
    );
    let max = store.max_offset();
    // Still full: still a clean error, nothing half-written.
    assert!(matches!(
        store.put(&Message::new("df", 0, vec![0; 1000])),
        Err(Error::DiskFull { .. })
    ));
    assert_eq!(store.max_offset(), max);
    for (i, off) in acked.iter().enumerate() {
        let r = store.read(*off).expect("read").expect("present");
        assert_eq!(
            r.view().expect("decodes").body,
            vec![(i % 251) as u8; 1000].as_slice()
        );
    }
    std::fs::remove_file(&filler).expect("free space");
    let r = store
        .put(&Message::new("df", 0, b"after".to_vec()))
        .expect("appends resume");
    assert_eq!(r.status, PutStatus::PutOk);
    acked.push(r.appended.expect("stored").physical_offset);
    store.shutdown().expect("shutdown");
    // No half-made or odd-size files left behind; everything acknowledged is there.
    let store = common::open_small(&root, FILE_SIZE, 4096, FlushMode::Async);
    let n = store.records_from(PhysicalOffset(0)).count();
    assert_eq!(n, acked.len());
    store.shutdown().expect("shutdown");
    let disk = common::scan_commit_log(&root, FILE_SIZE);
    assert_eq!(disk.len(), acked.len());
}
