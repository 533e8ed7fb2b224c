//! A real index file with arbitrary bytes written over it (header, slots, items): opening
//! never panics, and a key query never returns a message that does not carry the key.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mqstore::{Message, MessageStore, StoreConfig};

const SLOTS: u32 = 16;
const ITEMS: u32 = 128;

#[derive(Debug, Arbitrary)]
struct Patch {
    writes: Vec<(u16, u8)>,
}

fn config(root: &Path) -> StoreConfig {
    let mut c = StoreConfig::new(root);
    c.mapped_file_size_commit_log = 64 * 1024;
    c.mapped_file_size_consume_queue = 20 * 128;
    c.max_hash_slot_num = SLOTS;
    c.max_index_num = ITEMS;
    c
}

/// A store with 60 keyed messages (an index with chains in every slot), made once.
fn template() -> &'static (tempfile::TempDir, PathBuf) {
    static T: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MessageStore::open(config(dir.path())).expect("open");
        for i in 0..60u32 {
            let msg = Message::new("t", i % 2, vec![i as u8; 50])
                .with_property("KEYS", &format!("k{} common", i % 20));
            store.put(&msg).expect("put");
        }
        store.shutdown().expect("shutdown");
        let index = std::fs::read_dir(dir.path().join("index"))
            .expect("index dir")
            .next()
            .expect("index file")
            .expect("entry")
            .path();
        (dir, index)
    })
}

fn copy(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy(&e.path(), &target);
        } else if e.file_name() != "lock" {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

fuzz_target!(|p: Patch| {
    let (template, index) = template();
    let Ok(dir) = tempfile::tempdir() else { return };
    copy(template.path(), dir.path());
    let target = dir.path().join("index").join(index.file_name().expect("name"));
    let mut bytes = std::fs::read(&target).expect("read");
    for (pos, val) in p.writes.iter().take(64) {
        let i = *pos as usize % bytes.len();
        bytes[i] = *val;
    }
    std::fs::write(&target, &bytes).expect("write");
    let Ok(store) = MessageStore::open(config(dir.path())) else { return };
    for key in ["k0", "k7", "k19", "common", "absent"] {
        let hits = store.query_message("t", key, 64, 0, i64::MAX);
        for m in &hits.messages {
            let v = m.view().expect("decodes");
            let keys = v.property("KEYS").unwrap_or("");
            assert!(keys.split(' ').any(|k| k == key), "{key} answered with {keys}");
        }
    }
    let _ = store.shutdown();
});
