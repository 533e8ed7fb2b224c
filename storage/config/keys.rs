//! How configuration keys are declared, read and rendered: written once for the store's
//! [`StoreConfig`](crate::StoreConfig) and for any configuration built on it (broker-lite's
//! `BrokerConfig`).
//!
//! A configuration struct is one [`config_keys!`](crate::config_keys) declaration: per key
//! its RocketMQ name, field, type, default, codec (how a value is written in a
//! `broker.conf`: milliseconds, hours, a path, a list, …), doc and whether it may change
//! while running. From it come the struct, its defaults, `set_key` (one key from text),
//! `key_values` (every key rendered so that `set_key` reads it back unchanged), a table of
//! [`KeyInfo`] for documentation, and a module of key-name constants so that code naming a
//! key in an error uses the declaration's spelling. [`conf_pairs`] is the one reader of
//! properties text.

use std::fmt::{self, Write as _};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Why one key could not be set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The configuration has no such key.
    Unknown,
    /// The value does not parse or is out of range (why).
    Invalid(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Unknown => f.write_str("unknown key"),
            KeyError::Invalid(why) => f.write_str(why),
        }
    }
}

/// A line of properties text that is not a `key=value` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAPair {
    /// The line, trimmed.
    pub line: String,
}

impl fmt::Display for NotAPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: expected `key=value`", self.line)
    }
}

/// The `key=value` (or `key: value`) pairs of properties text, in order; blank lines and
/// `#`/`!` comments skipped, as Java's `Properties` reads them (without line continuations).
///
/// # Errors
/// [`NotAPair`] for the first line that is neither a pair, a comment nor blank.
pub fn conf_pairs(text: &str) -> Result<Vec<(&str, &str)>, NotAPair> {
    let mut pairs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some(split) = line.find(['=', ':']) else {
            return Err(NotAPair { line: line.into() });
        };
        pairs.push((line[..split].trim(), line[split + 1..].trim()));
    }
    Ok(pairs)
}

/// One declared key, for documentation and for code that lists keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key as a `broker.conf` spells it.
    pub key: &'static str,
    /// The Rust field holding it.
    pub field: &'static str,
    /// The unit its value is written in (`ms`, `hours`), or empty.
    pub unit: &'static str,
    /// What it does.
    pub doc: &'static str,
    /// May change while running.
    pub live: bool,
    /// Not one of RocketMQ's keys (broker-lite's or mqstore's own).
    pub ours: bool,
}

/// How a value of type `T` is written in a `broker.conf`.
pub trait Codec<T> {
    /// The unit the text is in (`ms`, `hours`), or empty.
    const UNIT: &'static str = "";
    /// Reads a value.
    ///
    /// # Errors
    /// Why `text` is not a value.
    fn parse(text: &str) -> Result<T, String>;
    /// Writes a value so that [`parse`](Self::parse) reads it back unchanged.
    fn render(value: &T) -> String;
}

/// `FromStr` and `Display`: numbers, booleans, addresses, strings and the store's enums.
#[derive(Debug)]
pub struct Plain<T>(PhantomData<T>);

impl<T: FromStr + fmt::Display> Codec<T> for Plain<T>
where
    T::Err: fmt::Display,
{
    fn parse(text: &str) -> Result<T, String> {
        text.parse()
            .map_err(|e| format!("cannot parse `{text}`: {e}"))
    }
    fn render(value: &T) -> String {
        value.to_string()
    }
}

/// A [`Plain`] value or nothing: empty text is `None`.
#[derive(Debug)]
pub struct Optional<T>(PhantomData<T>);

impl<T: FromStr + fmt::Display> Codec<Option<T>> for Optional<T>
where
    T::Err: fmt::Display,
{
    fn parse(text: &str) -> Result<Option<T>, String> {
        if text.is_empty() {
            Ok(None)
        } else {
            Plain::<T>::parse(text).map(Some)
        }
    }
    fn render(value: &Option<T>) -> String {
        value.as_ref().map(T::to_string).unwrap_or_default()
    }
}

/// A duration in whole milliseconds (RocketMQ's `…Mills`, `…Interval`, `…Timeout` keys).
#[derive(Debug)]
pub struct Millis;

impl Codec<Duration> for Millis {
    const UNIT: &'static str = "ms";
    fn parse(text: &str) -> Result<Duration, String> {
        Plain::<u64>::parse(text).map(Duration::from_millis)
    }
    fn render(value: &Duration) -> String {
        value.as_millis().to_string()
    }
}

/// A duration in whole hours (`fileReservedTime`).
#[derive(Debug)]
pub struct Hours;

impl Codec<Duration> for Hours {
    const UNIT: &'static str = "hours";
    fn parse(text: &str) -> Result<Duration, String> {
        Plain::<u64>::parse(text).map(|h| Duration::from_secs(h.saturating_mul(3600)))
    }
    fn render(value: &Duration) -> String {
        (value.as_secs() / 3600).to_string()
    }
}

/// A path, taken as written.
#[derive(Debug)]
pub struct Path;

impl Codec<PathBuf> for Path {
    fn parse(text: &str) -> Result<PathBuf, String> {
        Ok(PathBuf::from(text))
    }
    fn render(value: &PathBuf) -> String {
        value.display().to_string()
    }
}

/// A path or nothing: empty text is `None`.
#[derive(Debug)]
pub struct OptionalPath;

impl Codec<Option<PathBuf>> for OptionalPath {
    fn parse(text: &str) -> Result<Option<PathBuf>, String> {
        Ok((!text.is_empty()).then(|| PathBuf::from(text)))
    }
    fn render(value: &Option<PathBuf>) -> String {
        value
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}

/// A port, or off: a negative number or empty text is `None`, rendered `-1` (how RocketMQ's
/// tools show a port that is not served).
#[derive(Debug)]
pub struct PortOrOff;

impl Codec<Option<u16>> for PortOrOff {
    fn parse(text: &str) -> Result<Option<u16>, String> {
        if text.is_empty() {
            return Ok(None);
        }
        let port: i32 = Plain::parse(text)?;
        if port < 0 {
            return Ok(None);
        }
        u16::try_from(port)
            .map(Some)
            .map_err(|_| format!("`{text}` is not a port"))
    }
    fn render(value: &Option<u16>) -> String {
        value.map_or_else(|| "-1".to_owned(), |p| p.to_string())
    }
}

/// A `;`-separated list (`namesrvAddr`), blanks dropped.
#[derive(Debug)]
pub struct List;

impl Codec<Vec<String>> for List {
    fn parse(text: &str) -> Result<Vec<String>, String> {
        Ok(text
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }
    fn render(value: &Vec<String>) -> String {
        value.join(";")
    }
}

/// Declares a configuration struct key by key; see the [module docs](crate::config::keys).
///
/// ```
/// use std::time::Duration;
/// use mqstore::config_keys;
/// use mqstore::config::keys::{Millis, Plain};
///
/// config_keys! {
///     /// A small configuration.
///     #[derive(Debug, Clone)]
///     pub struct Settings in settings_key {
///         /// How long to wait.
///         "waitTime" [] => wait_time: Duration = Duration::from_millis(200), Millis;
///         /// Whether to try.
///         "tryHard" [live] => try_hard: bool = true, Plain<bool>;
///     }
/// }
///
/// let mut s = Settings::default();
/// s.set_key(settings_key::wait_time, "50").unwrap();
/// assert_eq!(s.wait_time, Duration::from_millis(50));
/// assert_eq!(s.key_values()[1], ("tryHard", "true".to_owned()));
/// assert!(Settings::KEYS[1].live);
/// ```
///
/// Each key is `"name" [flags] => field: Type = default, Codec;` with flags `live` (may
/// change while running) and `ours` (not a RocketMQ key); `, show |c| expr` before the `;`
/// renders an effective value instead of the field (a derived port). Fields that are not
/// keys follow in `extra { field: Type = default; }`. The struct gets `Default`.
#[macro_export]
macro_rules! config_keys {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident in $keys:ident {
            $(
                $(#[doc = $doc:literal])*
                $key:literal [$($flag:ident)*] => $field:ident : $ty:ty = $default:expr, $codec:ty
                $(, show $show:expr)? ;
            )*
        }
        $(extra {
            $(
                $(#[$xmeta:meta])*
                $xfield:ident : $xty:ty = $xdefault:expr ;
            )*
        })?
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $(
                $(#[doc = $doc])*
                #[doc = ""]
                #[doc = concat!("Key `", $key, "`; default `", stringify!($default), "`.")]
                pub $field: $ty,
            )*
            $($(
                $(#[$xmeta])*
                pub $xfield: $xty,
            )*)?
        }

        /// The key names of the configuration, one constant per field.
        #[allow(non_upper_case_globals, dead_code)]
        $vis mod $keys {
            $(
                #[doc = concat!("`", $key, "`")]
                pub const $field: &str = $key;
            )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    $($field: $default,)*
                    $($($xfield: $xdefault,)*)?
                }
            }
        }

        impl $name {
            /// Every declared key, in declaration order.
            pub const KEYS: &'static [$crate::config::keys::KeyInfo] = &[
                $($crate::config::keys::KeyInfo {
                    key: $key,
                    field: stringify!($field),
                    unit: <$codec as $crate::config::keys::Codec<$ty>>::UNIT,
                    doc: concat!($($doc, "\n",)*),
                    live: $crate::__config_flag!(live; $($flag)*),
                    ours: $crate::__config_flag!(ours; $($flag)*),
                },)*
            ];

            /// Sets one key from its text.
            ///
            /// # Errors
            /// [`KeyError::Unknown`]($crate::config::keys::KeyError::Unknown) for a key this
            /// configuration does not declare; `Invalid` for a value that does not parse.
            pub fn set_key(
                &mut self,
                key: &str,
                value: &str,
            ) -> ::std::result::Result<(), $crate::config::keys::KeyError> {
                match key {
                    $($key => {
                        self.$field = <$codec as $crate::config::keys::Codec<$ty>>::parse(value)
                            .map_err($crate::config::keys::KeyError::Invalid)?;
                    })*
                    _ => return Err($crate::config::keys::KeyError::Unknown),
                }
                Ok(())
            }

            /// Every declared key with its value rendered so that
            /// [`set_key`](Self::set_key) reads it back unchanged, in declaration order.
            pub fn key_values(&self) -> Vec<(&'static str, String)> {
                vec![$(
                    ($key, $crate::__config_render!(self, $field, $ty, $codec $(, $show)?)),
                )*]
            }
        }
    };
}

/// Whether `$flag` is among the flags (for [`config_keys!`](crate::config_keys)).
#[doc(hidden)]
#[macro_export]
macro_rules! __config_flag {
    (live; ) => { false };
    (live; live $($rest:ident)*) => { true };
    (ours; ) => { false };
    (ours; ours $($rest:ident)*) => { true };
    ($want:ident; $other:ident $($rest:ident)*) => { $crate::__config_flag!($want; $($rest)*) };
}

/// A key's rendered value: its field through its codec, or its `show` (for
/// [`config_keys!`](crate::config_keys)).
#[doc(hidden)]
#[macro_export]
macro_rules! __config_render {
    ($self:ident, $field:ident, $ty:ty, $codec:ty) => {
        <$codec as $crate::config::keys::Codec<$ty>>::render(&$self.$field)
    };
    ($self:ident, $field:ident, $ty:ty, $codec:ty, $show:expr) => {{
        let show: fn(&Self) -> String = $show;
        show($self)
    }};
}

/// One markdown table row per key of `keys`, with `defaults` (a configuration's
/// [`key_values`](crate::StoreConfig::key_values) on its defaults) in the third column:
/// the key list README shows, made from the declarations.
pub fn markdown_rows(keys: &[KeyInfo], defaults: &[(&'static str, String)]) -> String {
    let mut out = String::new();
    for k in keys {
        let default = defaults
            .iter()
            .find(|(key, _)| *key == k.key)
            .map_or("", |(_, v)| v.as_str());
        let default = match (default, k.unit) {
            ("", _) => "(none)".to_owned(),
            (v, "") => format!("`{v}`"),
            (v, unit) => format!("`{v}` {unit}"),
        };
        let mut notes = Vec::new();
        if k.ours {
            notes.push("ours");
        }
        if k.live {
            notes.push("live");
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join(", "))
        };
        let doc = k.doc.split_whitespace().collect::<Vec<_>>().join(" ");
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| `{}`{notes} | {default} | {} |",
            k.key,
            doc.replace('|', "\\|")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_skip_comments_and_take_either_separator() {
        let pairs = conf_pairs("# c\n! c\n\n a = 1 \nb:2\nc=x=y\n").expect("pairs");
        assert_eq!(pairs, vec![("a", "1"), ("b", "2"), ("c", "x=y")]);
        assert_eq!(
            conf_pairs("a=1\njusttext").expect_err("not a pair").line,
            "justtext"
        );
    }

    #[test]
    fn codecs_read_back_what_they_render() {
        let d = Duration::from_millis(1234);
        assert_eq!(Millis::parse(&Millis::render(&d)), Ok(d));
        let h = Duration::from_secs(48 * 3600);
        assert_eq!(Hours::parse(&Hours::render(&h)), Ok(h));
        for port in [None, Some(0), Some(8080)] {
            assert_eq!(PortOrOff::parse(&PortOrOff::render(&port)), Ok(port));
        }
        assert_eq!(PortOrOff::parse("65536").ok(), None);
        let list = vec!["a:1".to_owned(), "b:2".to_owned()];
        assert_eq!(List::parse(&List::render(&list)), Ok(list));
        assert_eq!(Optional::<u16>::parse(""), Ok(None));
        assert!(Plain::<u32>::parse("lots").is_err());
    }
}
