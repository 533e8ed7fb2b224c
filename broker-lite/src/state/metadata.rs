//! The broker's small metadata files (`config/*.json`: topics, subscription groups,
//! consumer offsets, delay offsets), written so that a crash or a power cut at any point
//! leaves either the old or the new content:
//! write `name.tmp`, fsync it, copy the current file to `name.bak`, rename the temporary
//! over `name`, fsync the directory. Reading falls back to `.bak` — and says so — when the
//! main file is missing its content or does not parse; it never silently starts empty.
//!
//! Java brokers write these files with fastjson, whose maps with integer keys come out
//! unquoted (`{0:12,1:7}`); [`quote_bare_keys`] makes such text standard JSON first.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// RocketMQ's `DataVersion`: when a table last changed and how often it has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataVersion {
    /// Last change (ms).
    #[serde(default)]
    pub timestamp: i64,
    /// Changes so far.
    #[serde(default)]
    pub counter: i64,
}

/// Wall-clock milliseconds (the store's clock).
pub fn now_millis() -> i64 {
    mqstore::Clock::now_millis(&mqstore::SystemClock)
}

/// What one metadata file holds.
pub trait Document: DeserializeOwned + Default + Send {
    /// What the file holds, for log lines.
    const WHAT: &'static str;
    /// The file's text.
    fn encode(&self) -> String;
    /// The table's version, for tables that carry one: bumped by every
    /// [`JsonTable::change`].
    fn data_version(&mut self) -> Option<&mut DataVersion> {
        None
    }
}

struct Held<T> {
    doc: T,
    /// Changed since the last successful write.
    dirty: bool,
}

/// A [`Document`] in memory and in its crash-safe file. Changes either go to disk at once
/// ([`JsonTable::change`]: topics, groups) or at the next [`JsonTable::persist`]
/// ([`JsonTable::change_later`]: offsets, written periodically and at shutdown).
pub struct JsonTable<T> {
    path: PathBuf,
    held: Mutex<Held<T>>,
}

impl<T> std::fmt::Debug for JsonTable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonTable")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<T: Document> JsonTable<T> {
    /// Loads `path` (or its backup); an empty document on a first start.
    ///
    /// # Errors
    /// [`LoadError::Corrupt`] when neither the file nor its backup parses.
    pub fn load(path: PathBuf) -> Result<Self, LoadError> {
        let doc = load(&path)?.unwrap_or_default();
        Ok(JsonTable {
            path,
            held: Mutex::new(Held { doc, dirty: false }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Held<T>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the document.
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.lock().doc)
    }

    /// Changes the document, bumps its data version and writes the file before returning
    /// (a failed write is logged and retried by the next [`JsonTable::persist`]).
    pub fn change<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut held = self.lock();
        let out = f(&mut held.doc);
        if let Some(v) = held.doc.data_version() {
            v.counter += 1;
            v.timestamp = now_millis();
        }
        held.dirty = true;
        if let Err(e) = self.write(&mut held) {
            tracing::error!(file = %self.path.display(), error = %e, "could not save {}", T::WHAT);
        }
        out
    }

    /// Changes the document in memory; the next [`JsonTable::persist`] writes it.
    pub fn change_later<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut held = self.lock();
        held.dirty = true;
        f(&mut held.doc)
    }

    /// Writes the file if anything changed since the last write.
    ///
    /// # Errors
    /// The write's I/O error; the change stays pending for the next call.
    pub fn persist(&self) -> io::Result<()> {
        let mut held = self.lock();
        self.write(&mut held)
    }

    /// The document's text, as the file holds it.
    pub fn text(&self) -> String {
        self.lock().doc.encode()
    }

    fn write(&self, held: &mut Held<T>) -> io::Result<()> {
        if !held.dirty {
            return Ok(());
        }
        store(&self.path, &held.doc.encode())?;
        held.dirty = false;
        Ok(())
    }
}

/// Why a metadata file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Neither the file nor its `.bak` parses.
    #[error("{path} does not parse ({reason}) and no usable {path}.bak exists")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
}

/// Loads `path` (or its `.bak`); `Ok(None)` when neither exists (a first start).
///
/// # Errors
/// [`LoadError::Corrupt`] when the file exists but neither it nor the backup parses: the
/// broker must not start with, e.g., consumer offsets silently reset.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, LoadError> {
    let bak = backup_path(path);
    let main = read_if_exists(path)?;
    let main_err = match &main {
        Some(text) => match parse::<T>(text) {
            Ok(v) => return Ok(Some(v)),
            Err(e) => Some(e),
        },
        None => None,
    };
    match read_if_exists(&bak)? {
        Some(text) => match parse::<T>(&text) {
            Ok(v) => {
                tracing::warn!(
                    file = %path.display(),
                    problem = main_err.as_deref().unwrap_or("missing"),
                    "metadata file unusable; loaded its backup"
                );
                Ok(Some(v))
            }
            Err(e) => Err(LoadError::Corrupt {
                path: path.to_owned(),
                reason: main_err.unwrap_or(e),
            }),
        },
        None => match main_err {
            Some(reason) => Err(LoadError::Corrupt {
                path: path.to_owned(),
                reason,
            }),
            None => Ok(None),
        },
    }
}

fn read_if_exists(path: &Path) -> Result<Option<String>, LoadError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LoadError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The entries of `theirs` that `mine` lacks or holds differently: what a slave takes
/// from its master's table.
pub fn changed_entries<V: PartialEq + Clone>(
    mine: &std::collections::BTreeMap<String, V>,
    theirs: &std::collections::BTreeMap<String, V>,
) -> Vec<(String, V)> {
    theirs
        .iter()
        .filter(|(k, v)| mine.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Parses a table's JSON as RocketMQ writes it (bare integer keys allowed): a file, or the
/// body of a GET_ALL_* answer a slave copies.
///
/// # Errors
/// Empty or malformed text.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    if text.trim().is_empty() {
        return Err("empty file".into());
    }
    serde_json::from_str(&quote_bare_keys(text)).map_err(|e| e.to_string())
}

fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".bak");
    path.with_file_name(name)
}

/// Writes `text` to `path` atomically and durably, keeping the previous content as `.bak`.
///
/// # Errors
/// Any I/O error; the previous file is then still intact.
pub fn store(path: &Path, text: &str) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    mqstore::create_dir_durable(dir).map_err(io::Error::other)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    if path.exists() {
        let bak = backup_path(path);
        fs::copy(path, &bak)?;
        File::open(&bak)?.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Quotes the bare (unquoted) object keys fastjson writes for integer-keyed maps, leaving
/// strings and everything else untouched: `{0:5, "a":{12:1}}` → `{"0":5, "a":{"12":1}}`.
pub fn quote_bare_keys(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    // True right after `{` or `,` (ignoring whitespace): a key may start here.
    let mut key_position = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
        } else {
            match c {
                b'"' => {
                    in_string = true;
                    key_position = false;
                }
                b'{' | b',' => key_position = true,
                c if c.is_ascii_whitespace() => {}
                c if key_position && (c.is_ascii_alphanumeric() || c == b'-' || c == b'_') => {
                    let start = i;
                    while i < bytes.len()
                        && (bytes[i].is_ascii_alphanumeric()
                            || bytes[i] == b'-'
                            || bytes[i] == b'_')
                    {
                        i += 1;
                    }
                    let mut j = i;
                    while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if j < bytes.len() && bytes[j] == b':' {
                        out.push('"');
                        out.push_str(&text[start..i]);
                        out.push('"');
                    } else {
                        out.push_str(&text[start..i]);
                    }
                    key_position = false;
                    continue;
                }
                _ => key_position = false,
            }
        }
        // Multi-byte UTF-8 characters are copied whole (only ASCII drives the state).
        let ch_len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + ch_len]);
        i += ch_len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn fastjson_integer_keys_parse() {
        let text = "{\"offsetTable\":{\"T@g\":{0:12,1:7},\"%RETRY%g@g\":{0:0}}}";
        let v: serde_json::Value = serde_json::from_str(&quote_bare_keys(text)).expect("json");
        assert_eq!(v["offsetTable"]["T@g"]["1"], 7);
        let strings = "{\"a\":\"{0:1, x}\"}";
        assert_eq!(quote_bare_keys(strings), strings);
    }

    #[test]
    fn falls_back_to_backup_and_never_starts_empty() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("config/offsets.json");
        assert!(load::<BTreeMap<String, u64>>(&path).expect("ok").is_none());
        store(&path, "{\"a\":1}").expect("store");
        store(&path, "{\"a\":2}").expect("store");
        fs::write(&path, "{\"a\":").expect("garble");
        let v: BTreeMap<String, u64> = load(&path).expect("ok").expect("some");
        assert_eq!(v["a"], 1, "the backup holds the previous version");
        fs::write(backup_path(&path), "").expect("garble bak");
        assert!(matches!(
            load::<BTreeMap<String, u64>>(&path),
            Err(LoadError::Corrupt { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn quoting_keeps_valid_json_unchanged(map in proptest::collection::btree_map("[ -~]{0,8}", 0i64..1000, 0..8)) {
            let text = serde_json::to_string(&map).expect("json");
            proptest::prop_assert_eq!(quote_bare_keys(&text), text);
        }

        #[test]
        fn bare_integer_keys_become_strings(map in proptest::collection::btree_map(0u32..100_000, -5i64..1000, 0..8)) {
            let body: Vec<String> = map.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            let text = format!("{{{}}}", body.join(","));
            let back: BTreeMap<String, i64> = serde_json::from_str(&quote_bare_keys(&text)).expect("parses");
            proptest::prop_assert_eq!(back.len(), map.len());
            for (k, v) in &map {
                proptest::prop_assert_eq!(back[&k.to_string()], *v);
            }
        }
    }
}
