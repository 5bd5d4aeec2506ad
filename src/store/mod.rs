//! The two stores that record what the files did: git (the audit trail) and SQLite
//! (telemetry). Both libraries are blocking, so each has a worker thread fed by a channel.

pub mod db;
mod db_retry;
pub mod git;
pub mod holds;
pub mod receipts;
pub mod spans;
pub mod totals;

/// Lowers the calling thread's scheduling priority (nice 10). The store workers do bulk
/// work (hashing, packing, inserting) that can wait a few milliseconds; the engine thread,
/// which moves cards, must not wait behind them on a machine with few cores.
pub(crate) fn background_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority only read and set this thread's own nice value.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}
