//! `broker-lite verify` on the real binary: a clean store passes (exit 0), a flipped bit is
//! reported with file and offset (exit 1), `--repair` refuses to drop records without
//! `--discard-after-corruption` (exit 2, nothing changed), and with it the store opens
//! again with every record before the damage.

use std::path::Path;
use std::process::Command;

use mqstore::{Message, MessageStore, PhysicalOffset, StoreConfig};

const FILE_SIZE: u64 = 64 * 1024;

fn write_conf(dir: &Path) -> std::path::PathBuf {
    let conf = dir.join("broker.conf");
    std::fs::write(
        &conf,
        format!(
            "storePathRootDir={}\nmappedFileSizeCommitLog={FILE_SIZE}\nmappedFileSizeConsumeQueue=20000\nmaxHashSlotNum=1000\nmaxIndexNum=4000\n",
            dir.join("store").display()
        ),
    )
    .expect("conf");
    conf
}

fn store_config(dir: &Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir.join("store"));
    c.mapped_file_size_commit_log = FILE_SIZE;
    c.mapped_file_size_consume_queue = 20_000;
    c.max_hash_slot_num = 1000;
    c.max_index_num = 4000;
    c
}

fn verify(conf: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_broker-lite"))
        .arg("verify")
        .arg("-c")
        .arg(conf)
        .arg("--quiet")
        .args(extra)
        .output()
        .expect("run broker-lite verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn verify_reports_and_repairs_a_flipped_bit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = write_conf(dir.path());
    let store = MessageStore::open(store_config(dir.path())).expect("open");
    let mut records = Vec::new();
    for i in 0..150u32 {
        let msg =
            Message::new("cli", i % 2, vec![i as u8; 1000]).with_property("KEYS", &format!("k{i}"));
        let a = store.put(&msg).expect("put").appended.expect("stored");
        records.push(a.physical_offset.0);
    }
    store.shutdown().expect("shutdown");

    let (code, out) = verify(&conf, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("150 messages") && out.contains("OK"), "{out}");

    // Flip a bit in the body of record 100 (second file).
    let victim = records[100];
    let file = dir
        .path()
        .join("store/commitlog")
        .join(format!("{:020}", victim / FILE_SIZE * FILE_SIZE));
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[(victim % FILE_SIZE) as usize + 300] ^= 0x10;
    std::fs::write(&file, &bytes).expect("write");

    let (code, out) = verify(&conf, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("CORRUPT"), "{out}");
    assert!(
        out.contains(&format!("{} @ {}", file.display(), victim % FILE_SIZE)),
        "names file and offset: {out}"
    );

    let (code, out) = verify(&conf, &["--repair"]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(
        std::fs::read(&file).expect("read"),
        bytes,
        "nothing changed"
    );

    let (code, out) = verify(&conf, &["--repair", "--discard-after-corruption"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("cut at offset {victim}")), "{out}");
    let store = MessageStore::open(store_config(dir.path())).expect("opens after repair");
    assert_eq!(store.max_offset(), PhysicalOffset(victim));
    for &at in &records[..100] {
        assert!(store.read(PhysicalOffset(at)).expect("read").is_some());
    }
    store.shutdown().expect("shutdown");
    let (code, out) = verify(&conf, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("100 messages"), "{out}");
}
