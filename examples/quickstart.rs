//! The store's main job until broker-lite exists: open a store on its defaults (1 GiB
//! CommitLog files, ASYNC_FLUSH), append messages to a few queues (singles and a batch),
//! read every one back by offset and by iteration, shut down, reopen, check again, then
//! consume a queue through its ConsumeQueue and find a message by key.
//!
//! ```text
//! cargo run --release --example quickstart [-- <store dir> [<messages> [<file size>]]]
//! ```
//! The directory defaults to `./store-quickstart`, the file size to RocketMQ's 1 GiB (the
//! store keeps one spare file ahead, so that needs 2 GiB of disk); run it twice to see
//! reopening recover the existing data.

use std::path::PathBuf;
use std::time::Instant;

use mqstore::{Message, MessageStore, PhysicalOffset, PutStatus, StoreConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "store-quickstart".into()));
    let count: u32 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let file_size: Option<u64> = args.next().map(|s| s.parse()).transpose()?;

    let mut config = StoreConfig::new(&dir);
    if let Some(size) = file_size {
        config.mapped_file_size_commit_log = size;
    }
    let started = Instant::now();
    let store = MessageStore::open(config.clone())?;
    let report = store.recovery_report();
    println!(
        "opened {} in {:?}: {} records found, data ends at {}{}",
        dir.display(),
        started.elapsed(),
        report.records,
        report.valid_end.0,
        report
            .truncated
            .as_ref()
            .map_or(String::new(), |(p, o, e)| format!(
                ", cut a torn tail in {} at {o}: {e}",
                p.display()
            ))
    );
    let first_new = store.max_offset();

    let started = Instant::now();
    let mut offsets = Vec::with_capacity(count as usize);
    for i in 0..count {
        let body = format!("message {i} of {count}").into_bytes();
        let msg = Message::new("QuickstartTopic", i % 4, body)
            .with_property("KEYS", &format!("key-{i}"))
            .with_property("TAGS", if i % 2 == 0 { "even" } else { "odd" });
        let put = store.put(&msg)?;
        if put.status != PutStatus::PutOk {
            return Err(format!("put {i}: {}", put.status.as_str()).into());
        }
        offsets.push(
            put.appended
                .ok_or("stored without an offset")?
                .physical_offset,
        );
    }
    let batch: Vec<Message> = (0..10)
        .map(|i| Message::new("QuickstartTopic", 0, format!("batch {i}").into_bytes()))
        .collect();
    let put = store.put_batch(&batch)?;
    let appended = put.appended.ok_or("batch not stored")?;
    let elapsed = started.elapsed();
    println!(
        "appended {count} messages + a batch of {} in {elapsed:?} ({:.0} msgs/s); batch msgIds {}…",
        appended.msg_count,
        f64::from(count) / elapsed.as_secs_f64(),
        &appended.msg_id()[..32]
    );

    let started = Instant::now();
    for (i, offset) in offsets.iter().enumerate() {
        let record = store.read(*offset)?.ok_or("record missing")?;
        let view = record.view()?;
        if view.body != format!("message {i} of {count}").as_bytes() {
            return Err(format!("record {i} at {} reads back wrong", offset.0).into());
        }
    }
    println!(
        "read {} records back by offset in {:?}",
        offsets.len(),
        started.elapsed()
    );
    store.shutdown()?;

    let store = MessageStore::open(config)?;
    let reread = store.records_from(first_new).count();
    let expected = offsets.len() + batch.len();
    if reread != expected {
        return Err(format!("after reopen: {reread} records, expected {expected}").into());
    }
    let next = store.next_queue_offset("QuickstartTopic", 0);
    println!(
        "reopened: {reread} new records intact, queue 0 continues at offset {}, store spans {}..{} in {} file(s)",
        next.0,
        store.min_offset().0,
        store.max_offset().0,
        store.commit_log_file_count()
    );
    let total = store.records_from(PhysicalOffset(0)).count();
    println!("{total} records in the store in all");

    // Consume queue 1 from its start through the ConsumeQueue, odd tags only, and look a
    // message up by key through the IndexFile.
    if !store.wait_dispatched(std::time::Duration::from_secs(60)) {
        return Err("dispatch did not catch up".into());
    }
    let odd = mqstore::TagFilter::parse("odd");
    let mut at = store.min_offset_in_queue("QuickstartTopic", 1);
    let max = store.max_offset_in_queue("QuickstartTopic", 1);
    let mut pulled = 0;
    while at < max {
        let got = store.get_message("quickstart", "QuickstartTopic", 1, at, 32, Some(&odd))?;
        pulled += got.messages.len();
        at = got.next_begin_offset;
    }
    let key = format!("key-{}", count.saturating_sub(1));
    let hits = store.query_message("QuickstartTopic", &key, 32, 0, i64::MAX);
    println!(
        "pulled {pulled} messages tagged `odd` from queue 1 ({} units); query by key {key}: {} hit(s)",
        max.0,
        hits.messages.len()
    );
    if count > 0 && hits.messages.is_empty() {
        return Err(format!("key {key} not found").into());
    }
    store.shutdown()?;
    Ok(())
}
