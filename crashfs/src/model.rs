//! What a power cut keeps, without any FUSE: per file, the content as of the last fsync
//! plus a seeded choice for every page changed since; per directory, the entries as of the
//! last directory fsync plus a seeded choice for every change since.

use std::collections::BTreeMap;
use std::ffi::OsString;

/// The unit a dirty region is judged in (a page of the page cache).
pub(crate) const PAGE: u64 = 4096;
/// The unit a torn page is mixed in: a disk sector is written whole or not at all.
const SECTOR: usize = 512;

/// splitmix64: small, fast and reproducible from a seed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What a cut chose, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Files written into the image.
    pub files: u64,
    /// Pages changed since their file's last fsync.
    pub dirty_pages: u64,
    /// Of those, kept with their new content.
    pub pages_new: u64,
    /// Kept with their content as of the last fsync.
    pub pages_old: u64,
    /// Mixed sector by sector.
    pub pages_torn: u64,
    /// Directory changes since the directory's last fsync that the image keeps.
    pub entries_kept: u64,
    /// Directory changes the image undoes.
    pub entries_undone: u64,
    /// Files whose unsynced size change was undone.
    pub sizes_undone: u64,
}

/// One file's durability: its size and the old content of every page changed since the
/// last fsync.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileModel {
    /// Size as of the last fsync (0 for a file never synced).
    pub durable_size: u64,
    /// Page index → the page as of the last fsync (zeros past the durable size).
    pub before: BTreeMap<u64, Vec<u8>>,
}

impl FileModel {
    /// A file that exists and is taken as durable as it is (found at mount).
    pub(crate) fn durable(size: u64) -> Self {
        FileModel {
            durable_size: size,
            before: BTreeMap::new(),
        }
    }

    /// Called before `[offset, offset + len)` changes: saves each page in it not saved yet.
    /// `read_page(index)` returns the page's current bytes (short or empty past the end).
    pub(crate) fn will_change(
        &mut self,
        offset: u64,
        len: u64,
        mut read_page: impl FnMut(u64) -> Vec<u8>,
    ) {
        if len == 0 {
            return;
        }
        let first = offset / PAGE;
        let last = (offset + len - 1) / PAGE;
        for page in first..=last {
            if self.before.contains_key(&page) {
                continue;
            }
            let mut old = if page * PAGE < self.durable_size {
                read_page(page)
            } else {
                Vec::new()
            };
            // Bytes past the durable size were never durable: they read back as zeros.
            let durable_in_page = self.durable_size.saturating_sub(page * PAGE).min(PAGE) as usize;
            old.truncate(durable_in_page);
            old.resize(PAGE as usize, 0);
            self.before.insert(page, old);
        }
    }

    /// The file was made durable at `size`.
    pub(crate) fn synced(&mut self, size: u64) {
        self.before.clear();
        self.durable_size = size;
    }

    /// The file's content after a cut, given its content now.
    pub(crate) fn image(&self, current: &[u8], rng: &mut Rng, report: &mut CutReport) -> Vec<u8> {
        let mut out = current.to_vec();
        let size = if out.len() as u64 != self.durable_size && rng.below(2) == 0 {
            report.sizes_undone += 1;
            self.durable_size
        } else {
            out.len() as u64
        };
        out.resize(size as usize, 0);
        for (&page, old) in &self.before {
            let start = (page * PAGE) as usize;
            if start >= out.len() {
                continue;
            }
            report.dirty_pages += 1;
            let end = (start + PAGE as usize).min(out.len());
            let old = &old[..end - start];
            match rng.below(3) {
                0 => report.pages_new += 1,
                1 => {
                    report.pages_old += 1;
                    out[start..end].copy_from_slice(old);
                }
                _ => {
                    report.pages_torn += 1;
                    for (i, sector) in old.chunks(SECTOR).enumerate() {
                        if rng.below(2) == 0 {
                            let at = start + i * SECTOR;
                            out[at..at + sector.len()].copy_from_slice(sector);
                        }
                    }
                }
            }
        }
        out
    }
}

/// A change to a directory's entries since its last fsync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DirOp {
    /// `name` now names inode `ino` (create, mkdir, or the arriving side of a rename
    /// across directories).
    Create { name: OsString, ino: u64 },
    /// `name` no longer names `ino`.
    Unlink { name: OsString, ino: u64 },
    /// A rename within the directory: atomic, kept or undone as one.
    Rename {
        from: OsString,
        to: OsString,
        ino: u64,
    },
}

/// One directory's durability: its entries as of the last fsync and the changes since.
#[derive(Debug, Clone, Default)]
pub(crate) struct DirModel {
    pub durable: BTreeMap<OsString, u64>,
    pub pending: Vec<DirOp>,
}

impl DirModel {
    /// The directory was made durable with `entries`.
    pub(crate) fn synced(&mut self, entries: &BTreeMap<OsString, u64>) {
        self.durable = entries.clone();
        self.pending.clear();
    }

    /// The entries after a cut: the durable ones with each later change kept or undone.
    /// A change whose source did not survive (a rename of a file whose creation was
    /// undone) has nothing to act on.
    pub(crate) fn image(&self, rng: &mut Rng, report: &mut CutReport) -> BTreeMap<OsString, u64> {
        let mut out = self.durable.clone();
        for op in &self.pending {
            if rng.below(2) == 0 {
                report.entries_undone += 1;
                continue;
            }
            report.entries_kept += 1;
            match op {
                DirOp::Create { name, ino } => {
                    out.insert(name.clone(), *ino);
                }
                DirOp::Unlink { name, ino } => {
                    if out.get(name) == Some(ino) {
                        out.remove(name);
                    }
                }
                DirOp::Rename { from, to, ino } => {
                    if out.get(from) == Some(ino) {
                        out.remove(from);
                        out.insert(to.clone(), *ino);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn page(b: u8) -> Vec<u8> {
        vec![b; PAGE as usize]
    }

    #[test]
    fn a_synced_file_comes_back_whole_and_unsynced_pages_are_old_new_or_torn() {
        let mut m = FileModel::durable(2 * PAGE);
        let old: Vec<u8> = [page(1), page(2)].concat();
        m.will_change(PAGE, PAGE, |p| {
            old[(p * PAGE) as usize..((p + 1) * PAGE) as usize].to_vec()
        });
        let mut now = old.clone();
        now[PAGE as usize..].fill(9);
        let mut seen = [false; 3];
        for seed in 0..200 {
            let mut report = CutReport::default();
            let img = m.image(&now, &mut Rng::new(seed), &mut report);
            assert_eq!(
                &img[..PAGE as usize],
                &old[..PAGE as usize],
                "untouched page kept"
            );
            let second = &img[PAGE as usize..];
            if second == &old[PAGE as usize..] {
                seen[0] = true;
            } else if second == &now[PAGE as usize..] {
                seen[1] = true;
            } else {
                seen[2] = true;
            }
            assert_eq!(report.dirty_pages, 1);
        }
        assert_eq!(seen, [true; 3], "old, new and torn all occur");
        m.synced(2 * PAGE);
        let img = m.image(&now, &mut Rng::new(1), &mut CutReport::default());
        assert_eq!(img, now, "after fsync the new content is durable");
    }

    #[test]
    fn a_file_never_synced_may_lose_its_size_and_reads_zeros_where_it_was_not_durable() {
        let mut m = FileModel::default();
        m.will_change(0, 100, |_| Vec::new());
        let now = vec![7u8; 100];
        let mut sizes = std::collections::BTreeSet::new();
        for seed in 0..50 {
            let img = m.image(&now, &mut Rng::new(seed), &mut CutReport::default());
            sizes.insert(img.len());
            assert!(img.iter().all(|&b| b == 0 || b == 7));
        }
        assert_eq!(sizes.into_iter().collect::<Vec<_>>(), vec![0, 100]);
    }

    #[test]
    fn unsynced_entries_are_kept_or_undone_and_renames_are_atomic() {
        let mut d = DirModel::default();
        d.durable.insert("a".into(), 2);
        d.pending.push(DirOp::Create {
            name: "t.tmp".into(),
            ino: 3,
        });
        d.pending.push(DirOp::Rename {
            from: "t.tmp".into(),
            to: "t".into(),
            ino: 3,
        });
        d.pending.push(DirOp::Unlink {
            name: "a".into(),
            ino: 2,
        });
        let mut outcomes = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let img = d.image(&mut Rng::new(seed), &mut CutReport::default());
            assert!(
                !(img.contains_key(OsStr::new("t.tmp")) && img.contains_key(OsStr::new("t"))),
                "never both names"
            );
            outcomes.insert(img.keys().cloned().collect::<Vec<_>>());
        }
        assert!(outcomes.len() >= 4, "{outcomes:?}");
        d.synced(&BTreeMap::from([("t".into(), 3)]));
        let img = d.image(&mut Rng::new(5), &mut CutReport::default());
        assert_eq!(img, BTreeMap::from([("t".into(), 3)]));
    }
}
