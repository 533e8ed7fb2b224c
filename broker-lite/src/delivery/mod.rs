//! What happens to messages between a send and a pull besides storing them: pulls held
//! until data arrives ([`long_poll`]), orderly consumers' queue locks ([`queue_locks`]),
//! transactions' half messages ([`half_messages`]) and delayed delivery ([`scheduled`]).

// Bottom to top (one per group, so rustfmt keeps the order).
pub mod queue_locks;

pub mod long_poll;

pub mod half_messages;

pub mod scheduled;
