//! How full the disk under the store is, injectable so tests can simulate a full disk.

use std::fmt::Debug;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// Measures how much of a filesystem is in use.
pub trait DiskUsage: Send + Sync + Debug {
    /// Percentage (0..=100, rounded up) of the filesystem holding `path` that is in use,
    /// as RocketMQ computes it: used / (used + available to unprivileged users). `None`
    /// if it cannot be measured.
    fn used_percent(&self, path: &Path) -> Option<u32>;
}

/// The real filesystem, measured with `statvfs`.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsDiskUsage;

impl DiskUsage for FsDiskUsage {
    fn used_percent(&self, path: &Path) -> Option<u32> {
        let space = crate::file::mmap::fs_space(path).ok()?;
        used_percent(space.used, space.available)
    }
}

/// RocketMQ's ratio (`getDiskPartitionSpaceUsedPercent`): used over used plus available,
/// rounded up to a whole percent.
pub(crate) fn used_percent(used: u64, available: u64) -> Option<u32> {
    let total = u128::from(used) + u128::from(available);
    if total == 0 {
        return None;
    }
    Some((u128::from(used) * 100).div_ceil(total) as u32)
}

/// A disk whose usage a test sets.
#[derive(Debug)]
pub struct ManualDiskUsage {
    percent: AtomicU32,
}

/// Stored for "cannot be measured".
const UNKNOWN: u32 = u32::MAX;

impl ManualDiskUsage {
    /// A disk `percent` full.
    pub fn new(percent: u32) -> Self {
        ManualDiskUsage {
            percent: AtomicU32::new(percent),
        }
    }

    /// Sets the usage; `None` makes it unmeasurable.
    pub fn set(&self, percent: Option<u32>) {
        self.percent
            .store(percent.unwrap_or(UNKNOWN), Ordering::SeqCst);
    }
}

impl DiskUsage for ManualDiskUsage {
    fn used_percent(&self, _path: &Path) -> Option<u32> {
        match self.percent.load(Ordering::SeqCst) {
            UNKNOWN => None,
            p => Some(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_rounds_up_like_rocketmq() {
        assert_eq!(used_percent(0, 100), Some(0));
        assert_eq!(used_percent(75, 25), Some(75));
        assert_eq!(used_percent(751, 249), Some(76), "75.1 % counts as 76");
        assert_eq!(used_percent(100, 0), Some(100));
        assert_eq!(used_percent(0, 0), None);
        assert_eq!(used_percent(u64::MAX, u64::MAX), Some(50));
    }

    #[test]
    fn real_filesystem_is_measured() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = FsDiskUsage.used_percent(dir.path()).expect("statvfs works");
        assert!(p <= 100);
        assert_eq!(FsDiskUsage.used_percent(&dir.path().join("missing")), None);
        let manual = ManualDiskUsage::new(91);
        assert_eq!(manual.used_percent(dir.path()), Some(91));
        manual.set(None);
        assert_eq!(manual.used_percent(dir.path()), None);
    }
}
