//! Files on disk: fixed-size memory-mapped files (the only `unsafe` in the crate), a
//! queue of them addressed by global offset, the background allocation of the next one,
//! and the disk-usage probe the cleaner asks.

#[allow(unsafe_code)]
pub(crate) mod mmap;

pub(crate) mod allocate;
pub(crate) mod disk;
pub(crate) mod mapped_file_queue;
