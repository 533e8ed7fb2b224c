//! A broker among others: replication inside a broker group ([`ha`]), a slave's copy of its
//! master's metadata ([`slave_sync`]) and registration with external name servers
//! ([`register`]).

// Bottom to top: ha sits below the broker; slave_sync and register use it.
pub mod ha;
pub mod register;
pub mod slave_sync;
