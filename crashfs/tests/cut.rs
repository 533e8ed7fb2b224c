//! crashfs through a real mount: what an image keeps after fsync and after a directory
//! fsync, and what it may lose without them. (Shared mappings and msync through crashfs
//! are exercised by the store's power-cut tests, tests/power_cut.rs.)

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crashfs::CrashFs;

fn require() -> bool {
    if let Some(why) = crashfs::unavailable() {
        assert!(
            std::env::var_os("MQSTORE_REQUIRE_ROOT_TESTS").is_none(),
            "crashfs tests required but cannot run: {why}"
        );
        eprintln!("crashfs test not run: {why}");
        return false;
    }
    true
}

fn mounted(dir: &Path) -> CrashFs {
    let backing = dir.join("backing");
    let mnt = dir.join("mnt");
    fs::create_dir_all(&backing).expect("backing");
    fs::create_dir_all(&mnt).expect("mnt");
    CrashFs::mount(&backing, &mnt).expect("mount")
}

fn sync_dir(path: &Path) {
    File::open(path)
        .and_then(|d| d.sync_all())
        .expect("fsync dir");
}

#[test]
fn fsynced_data_and_entries_survive_every_cut_and_unsynced_ones_may_not() {
    if !require() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = mounted(dir.path());
    let mnt = fs.mountpoint().to_owned();
    // A: written, fsynced, its directory fsynced. B: written, never synced.
    let mut a = File::create(mnt.join("a")).expect("create a");
    a.write_all(&[1u8; 10_000]).expect("write a");
    a.sync_all().expect("fsync a");
    sync_dir(&mnt);
    fs::write(mnt.join("b"), [2u8; 5000]).expect("write b");
    // Then A changes in its second page without an fsync.
    a.write_all_at(&[9u8; 100], 5000).expect("rewrite a");
    let mut b_seen = [false; 2];
    let mut a_seen = [false; 2];
    for seed in 0..40 {
        let image = dir.path().join(format!("image-{seed}"));
        let report = fs.cut(seed, &image).expect("cut");
        let a_img = fs::read(image.join("a")).expect("a is durable");
        assert_eq!(a_img.len(), 10_000, "seed {seed}");
        assert!(
            a_img[..4096].iter().all(|&x| x == 1),
            "seed {seed}: untouched page"
        );
        a_seen[usize::from(a_img[5000] == 9)] = true;
        match fs::read(image.join("b")) {
            Ok(b) => {
                b_seen[1] = true;
                assert!(b.iter().all(|&x| x == 2 || x == 0), "seed {seed}");
            }
            Err(_) => b_seen[0] = true,
        }
        assert!(report.dirty_pages >= 1, "{report:?}");
    }
    assert_eq!(
        a_seen,
        [true, true],
        "the unsynced rewrite is sometimes kept, sometimes not"
    );
    assert_eq!(
        b_seen,
        [true, true],
        "the unsynced file sometimes survives, sometimes not"
    );
    drop(a);
    fs.unmount().expect("unmount");
}

#[test]
fn renames_within_a_directory_are_atomic_and_a_synced_rename_stays() {
    if !require() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = mounted(dir.path());
    let mnt = fs.mountpoint().to_owned();
    fs::create_dir(mnt.join("d")).expect("mkdir");
    sync_dir(&mnt);
    let d = mnt.join("d");
    let mut f = File::create(d.join("x.tmp")).expect("create");
    f.write_all(b"content").expect("write");
    f.sync_all().expect("fsync");
    fs::rename(d.join("x.tmp"), d.join("x")).expect("rename");
    for seed in 0..30 {
        let image = dir.path().join(format!("image-{seed}"));
        fs.cut(seed, &image).expect("cut");
        let names: Vec<_> = fs::read_dir(image.join("d"))
            .expect("d is durable")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(names.len() <= 1, "seed {seed}: never both names: {names:?}");
    }
    sync_dir(&d);
    fs::remove_file(d.join("x")).expect("unlink");
    let image = dir.path().join("image-after-sync");
    fs.cut(99, &image).expect("cut");
    // The unlink is not synced: x may or may not be there, but nothing else is.
    let names: Vec<_> = fs::read_dir(image.join("d"))
        .expect("d")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
        .collect();
    assert!(names.is_empty() || names == ["x"], "{names:?}");
    fs.unmount().expect("unmount");
}
