//! A broker among others: a slave's copy of its master's metadata ([`slave_sync`]) and
//! registration with external name servers ([`register`]). Both run above the broker and
//! talk to other processes with our client; replication itself is [`ha`](crate::ha).

pub mod slave_sync;

pub mod register;
