//! Delayed delivery (RocketMQ's `ScheduleMessageService`): messages with a `DELAY` level wait in `SCHEDULE_TOPIC_XXXX`
//! queue `level - 1`; the `rmq-schedule` thread re-puts each to its real topic and queue
//! when it is due, and keeps how far each level got in `config/delayOffset.json`.
//!
//! Progress is saved after delivery, so a crash between a re-put and the next save
//! delivers that message again after restart (at-least-once, as RocketMQ).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mqstore::format::{keys, SCHEDULE_TOPIC};
use mqstore::{Message, MessageStore, PhysicalOffset, PutStatus, QueueOffset};

use crate::delivery::half_messages::HALF_TOPIC;
use crate::state::metadata::{self, Document, JsonTable};

/// How often the thread looks for newly arrived delayed messages when nothing is due
/// sooner, and how long it waits before retrying a failed re-put.
const POLL: Duration = Duration::from_millis(20);
/// Pause after the store failed (an I/O error), as RocketMQ's 10 s exception back-off.
const ERROR_PAUSE: Duration = Duration::from_secs(10);

/// `delayOffset.json`: level → next schedule-queue offset to deliver.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DelayOffsetFile {
    #[serde(default)]
    offset_table: BTreeMap<u32, u64>,
}

impl Document for DelayOffsetFile {
    const WHAT: &'static str = "delay offsets";

    /// As RocketMQ's fastjson writes it: integer keys unquoted.
    fn encode(&self) -> String {
        encode_offsets(&self.offset_table)
    }
}

fn encode_offsets(table: &BTreeMap<u32, u64>) -> String {
    let entries: Vec<String> = table.iter().map(|(l, o)| format!("{l}:{o}")).collect();
    format!("{{\n\t\"offsetTable\":{{{}}}\n}}", entries.join(","))
}

/// Rewrites a message read from the schedule topic for its real topic and queue; `None`
/// for one that names no real topic or a transaction half topic (discarded, as RocketMQ).
pub fn due_message(mut msg: Message) -> Option<Message> {
    let topic = msg.property(keys::REAL_TOPIC)?.to_owned();
    let queue = msg.property(keys::REAL_QID)?.parse::<u32>().ok()?;
    if topic == HALF_TOPIC {
        return None;
    }
    msg.topic = topic;
    msg.queue_id = queue;
    Some(
        msg.without_property(keys::DELAY)
            .with_property_replaced(keys::WAIT, "false"),
    )
}

struct Shared {
    store: Arc<MessageStore>,
    levels: Vec<i64>,
    /// Per level, the next schedule-queue offset to deliver.
    progress: JsonTable<DelayOffsetFile>,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// The delivery thread and its progress table.
pub struct ScheduledDelivery {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for ScheduledDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduledDelivery")
            .field("levels", &self.shared.levels)
            .finish_non_exhaustive()
    }
}

impl ScheduledDelivery {
    /// Loads `delayOffset.json` (or its backup) and, if `deliver`, starts the thread (a
    /// slave only keeps the table its master's progress is copied into).
    ///
    /// # Errors
    /// A corrupt progress file without a usable backup, or the thread could not start.
    pub fn start(
        store: Arc<MessageStore>,
        levels: Vec<i64>,
        path: PathBuf,
        deliver: bool,
    ) -> Result<Self, metadata::LoadError> {
        let progress = JsonTable::<DelayOffsetFile>::load(path.clone())?;
        progress.change_later(|f| f.offset_table.retain(|l, _| *l >= 1));
        let shared = Arc::new(Shared {
            store,
            levels,
            progress,
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let thread = if deliver {
            let worker = Arc::clone(&shared);
            Some(
                std::thread::Builder::new()
                    .name("rmq-schedule".into())
                    .spawn(move || worker.run())
                    .map_err(|e| metadata::LoadError::Io { path, source: e })?,
            )
        } else {
            None
        };
        Ok(ScheduledDelivery {
            shared,
            thread: Mutex::new(thread),
        })
    }

    /// Delay of each level in milliseconds (index 0 = level 1).
    pub fn levels(&self) -> &[i64] {
        &self.shared.levels
    }

    /// Next offset to deliver per level (GET_ALL_DELAY_OFFSET, tests).
    pub fn offsets(&self) -> BTreeMap<u32, u64> {
        self.shared.progress.read(|f| f.offset_table.clone())
    }

    /// Takes a master's progress (a slave's copy, from GET_ALL_DELAY_OFFSET); never moves
    /// a level back.
    ///
    /// # Errors
    /// The answer does not parse.
    pub fn adopt(&self, master: &str) -> Result<(), String> {
        let theirs: DelayOffsetFile = metadata::parse(master)?;
        self.shared.progress.change_later(|f| {
            for (level, offset) in theirs.offset_table {
                let mine = f.offset_table.entry(level).or_insert(0);
                *mine = (*mine).max(offset);
            }
        });
        Ok(())
    }

    /// The table in `delayOffset.json`'s form.
    pub fn to_json(&self) -> String {
        self.shared.progress.text()
    }

    /// Writes `delayOffset.json` if progress was made since the last write.
    pub fn persist(&self) {
        self.shared.persist();
    }

    /// Stops and joins the thread, then saves progress. Idempotent.
    pub fn stop(&self) {
        *self.shared.lock() = true;
        self.shared.wake.notify_all();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            if h.join().is_err() {
                tracing::error!("the schedule thread panicked");
            }
        }
        self.shared.persist();
    }
}

impl Drop for ScheduledDelivery {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, bool> {
        self.stop.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn persist(&self) {
        if let Err(e) = self.progress.persist() {
            tracing::error!(error = %e, "could not save delay offsets");
        }
    }

    fn run(&self) {
        let mut last_save = Instant::now();
        loop {
            let wait = match self.deliver_due() {
                Ok(w) => w,
                Err(e) => {
                    tracing::error!(error = %e, "delayed delivery failed; retrying in 10 s");
                    ERROR_PAUSE
                }
            };
            if last_save.elapsed() >= Duration::from_secs(10) {
                self.persist();
                last_save = Instant::now();
            }
            let guard = self.lock();
            if *guard {
                return;
            }
            let (guard, _) = self
                .wake
                .wait_timeout(guard, wait)
                .unwrap_or_else(PoisonError::into_inner);
            if *guard {
                return;
            }
        }
    }

    /// Delivers every due message of every level; returns how long to sleep.
    fn deliver_due(&self) -> mqstore::Result<Duration> {
        let mut wait = POLL;
        for (index, &delay) in self.levels.iter().enumerate() {
            let level = index as u32 + 1;
            if let Some(due_in) = self.deliver_level(level, delay)? {
                wait = wait.min(due_in);
            }
        }
        Ok(wait)
    }

    /// Delivers one level's due messages in order; `Some(d)` when the next one is due in
    /// `d` (or a re-put must be retried).
    fn deliver_level(&self, level: u32, delay: i64) -> mqstore::Result<Option<Duration>> {
        let queue = level - 1;
        let store = &self.store;
        let min = store.min_offset_in_queue(SCHEDULE_TOPIC, queue).0;
        let max = store.max_offset_in_queue(SCHEDULE_TOPIC, queue).0;
        let mut offset = self
            .progress
            .read(|f| f.offset_table.get(&level).copied().unwrap_or(0));
        // A saved offset outside the queue (files removed, store replaced) is clamped.
        offset = offset.clamp(min, max.max(min));
        let mut outcome = None;
        while offset < max {
            let Some(unit) = store.queue_unit(SCHEDULE_TOPIC, queue, QueueOffset(offset)) else {
                offset += 1;
                continue;
            };
            let now = mqstore::Clock::now_millis(&mqstore::SystemClock);
            let mut due = unit.tags_code;
            if due > now.saturating_add(delay) {
                // A due time further out than the level allows (clock moved back).
                due = now;
            }
            if due > now {
                outcome = Some(Duration::from_millis((due - now) as u64));
                break;
            }
            let record = store.read(PhysicalOffset(unit.physical_offset as u64))?;
            let Some(msg) = record
                .as_ref()
                .and_then(|r| r.view().ok())
                .and_then(|v| due_message(v.to_message()))
            else {
                tracing::warn!(
                    level,
                    offset,
                    "delayed message unreadable or without a real topic; skipped"
                );
                offset += 1;
                continue;
            };
            let put = store.put(&msg)?;
            if put.status == PutStatus::PutOk || put.appended.is_some() {
                offset += 1;
            } else {
                tracing::warn!(
                    level,
                    offset,
                    status = put.status.as_str(),
                    "re-put of a due message failed; retrying"
                );
                outcome = Some(POLL);
                break;
            }
        }
        if self
            .progress
            .read(|f| f.offset_table.get(&level) != Some(&offset))
        {
            self.progress
                .change_later(|f| f.offset_table.insert(level, offset));
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_written_with_bare_keys_and_read_back() {
        let mut t = BTreeMap::new();
        t.insert(1, 25);
        t.insert(3, 0);
        let text = encode_offsets(&t);
        assert!(text.contains("{1:25,3:0}"), "{text}");
        let back: DelayOffsetFile =
            serde_json::from_str(&metadata::quote_bare_keys(&text)).expect("parses");
        assert_eq!(back.offset_table.get(&1), Some(&25));
        assert_eq!(back.offset_table.get(&3), Some(&0));
    }

    #[test]
    fn a_due_message_goes_back_to_its_real_queue_without_its_delay() {
        let m = Message::new(SCHEDULE_TOPIC, 2, b"x".to_vec())
            .with_property(keys::DELAY, "3")
            .with_property(keys::REAL_TOPIC, "T")
            .with_property(keys::REAL_QID, "5")
            .with_property(keys::TAGS, "a");
        let d = due_message(m).expect("has a real topic");
        assert_eq!((d.topic.as_str(), d.queue_id), ("T", 5));
        assert_eq!(d.property(keys::DELAY), None);
        assert_eq!(d.property(keys::TAGS), Some("a"));
        let half = Message::new(SCHEDULE_TOPIC, 0, Vec::new())
            .with_property(keys::REAL_TOPIC, HALF_TOPIC)
            .with_property(keys::REAL_QID, "0");
        assert!(due_message(half).is_none());
    }
}
