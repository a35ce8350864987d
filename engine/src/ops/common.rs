//! What the access checks over live processes share, as the kernel's
//! `mm/damon/ops-common.c` holds what its `vaddr` and `paddr` operations share:
//! - [`Targets`]: the per-target table (target id → its [`Process`] and the check's state
//!   for it), which answers the [`TargetTable`] half of [`AccessCheck`];
//! - [`access_error`] / `From<ProcessError> for AccessError`: a process error as the
//!   monitor understands it (gone, permission, other);
//! - [`pagemap_entry`] / [`pagemap_error`]: a pagemap read whose failure means "gone" when
//!   the target has exited;
//! - [`absent_answer`]: residency as evidence, for an anonymous page that was not present
//!   at the start of the interval (the refault probe and page_idle);
//! - [`RefsCheck`]: a check that writes `clear_refs` at prepare and reads the answer back at
//!   check (smaps `Referenced`, soft-dirty bits), with the reader as the only difference.

use crate::access::{Access, AccessCheck, AccessError, MonitorCost, SampleReq, TargetTable};
use crate::attrs::Attrs;
use crate::kernel::clear_refs::ClearRefs;
use crate::kernel::pagemap::{PagemapEntry, Residency};
use crate::process::{Process, ProcessError};
use crate::region::{AddrRange, TargetId};
use std::collections::BTreeMap;
use std::marker::PhantomData;

/// Map a process error of target `id` to the access-check error the monitor understands.
pub fn access_error(id: TargetId, e: ProcessError) -> AccessError {
    if e.is_gone() {
        return AccessError::TargetGone(id);
    }
    match e {
        ProcessError::Permission { path, .. } => AccessError::Permission {
            target: id,
            what: format!(
                "cannot read {}: needs root or ptrace read access",
                path.display()
            ),
        },
        e => AccessError::Other {
            target: id,
            msg: e.to_string(),
        },
    }
}

/// The pid a process error is about (a target's id is its pid).
fn pid_of(e: &ProcessError) -> u32 {
    match e {
        ProcessError::Init => 1,
        ProcessError::Myself { pid }
        | ProcessError::KernelThread { pid, .. }
        | ProcessError::Thread { pid, .. }
        | ProcessError::NoSuchProcess { pid }
        | ProcessError::Gone { pid }
        | ProcessError::Reused { pid, .. }
        | ProcessError::Permission { pid, .. }
        | ProcessError::Pidfd { pid, .. }
        | ProcessError::Maps { pid, .. }
        | ProcessError::Status { pid, .. }
        | ProcessError::Stat { pid, .. }
        | ProcessError::Io { pid, .. } => *pid,
    }
}

impl From<ProcessError> for AccessError {
    /// The error of the target whose pid the process error names.
    fn from(e: ProcessError) -> Self {
        access_error(TargetId(pid_of(&e)), e)
    }
}

/// A failed pagemap read of `proc`: the target is gone if it exited, else an I/O error
/// naming its pagemap.
pub fn pagemap_error(proc: &mut Process, source: std::io::Error) -> AccessError {
    if !proc.is_alive() {
        return AccessError::TargetGone(proc.id());
    }
    AccessError::Io {
        path: proc.pagemap().path().to_owned(),
        source,
    }
}

/// The pagemap entry of `addr` in `proc`, or why not ([`pagemap_error`]).
pub fn pagemap_entry(proc: &mut Process, addr: u64) -> Result<Option<PagemapEntry>, AccessError> {
    match proc.pagemap().entry(addr) {
        Ok(e) => Ok(e),
        Err(source) => Err(pagemap_error(proc, source)),
    }
}

/// Whether a page's entry at the start of an interval can serve as residency evidence:
/// not present, and a swap area's entry or none at all (not a migration, device or marker
/// entry). The caller also makes sure the page is private anonymous. Pure.
pub fn absent_at_start(e: PagemapEntry) -> bool {
    matches!(e.residency(), Residency::Swapped { .. } | Residency::None)
}

/// Residency is evidence: the answer for a private anonymous page that was absent at the
/// start of the interval ([`absent_at_start`] of `start`), from its entry `end` at the end.
/// Pure.
/// - still absent, same entry (no page, or the same swap slot) ⇒ **NotAccessed**: any
///   access would have faulted it in (a read of a never-touched page maps the zero page,
///   which is present too). A range unmapped since the VMAs were last read reads the same
///   (no entry at either end) and answers the same, as the kernel answers a hole; the next
///   update drops it from the regions;
/// - present ⇒ **Accessed**: only a fault brings an anonymous page in. Answering it is
///   what keeps the rule unbiased — were it Unknown, absent pages could only ever answer
///   NotAccessed. Exception not seen here: khugepaged collapsing the page into a huge page
///   (it swaps in and fills empty PTEs, mm/khugepaged.c 6.12) without an access;
///   `MADV_COLLAPSE` by madvd itself is kept out by the callers (advised ranges are
///   Unknown);
/// - anything else ⇒ **Unknown**: a special entry (a migration entry means the page came in
///   and is moving), swapped ↔ none (discarded by the target, `MADV_DONTNEED`/`munmap`),
///   another swap slot (it was in memory in between: we cannot tell an access from a
///   kernel swap-in), or no entry (end of the address space).
///
/// The kernel's `damon_va_young` (mm/damon/vaddr.c 6.12, `damon_young_pmd_entry`: `if
/// (!pte_present(ptent)) goto out;`) answers "not accessed" for every non-present page at
/// check, whatever it was at the start. madvd agrees for the case above (absent at both
/// ends), and differs in being stricter elsewhere: a page present at the start and gone at
/// the end (reclaimed or paged out by the actuator within the interval: it may have been
/// touched first), file and shared pages, special entries and no-VMA gaps the caller could
/// not classify stay Unknown where the kernel says "not accessed".
pub fn absent_answer(start: PagemapEntry, end: Option<PagemapEntry>) -> Access {
    let Some(end) = end else {
        return Access::Unknown;
    };
    match (start.residency(), end.residency()) {
        (Residency::Swapped { .. } | Residency::None, Residency::Present) => Access::Accessed,
        (Residency::None, Residency::None) => Access::NotAccessed,
        (Residency::Swapped { slot: a }, Residency::Swapped { slot: b }) if a == b => {
            Access::NotAccessed
        }
        _ => Access::Unknown,
    }
}

/// What a check keeps per target: at least the process.
pub trait Entry {
    /// The entry of a newly added target.
    fn new(proc: Process) -> Self;
    fn process(&self) -> &Process;
    fn into_process(self) -> Process;
}

impl Entry for Process {
    fn new(proc: Process) -> Self {
        proc
    }
    fn process(&self) -> &Process {
        self
    }
    fn into_process(self) -> Process {
        self
    }
}

/// The per-target table of a check over live processes.
pub struct Targets<E = Process> {
    /// Who holds the table, for "not a target of …" (e.g. "the smaps check").
    owner: &'static str,
    map: BTreeMap<TargetId, E>,
}

impl<E: Entry> Targets<E> {
    /// An empty table of `owner` ("the smaps check", "the refault probe").
    pub fn new(owner: &'static str) -> Self {
        Self {
            owner,
            map: BTreeMap::new(),
        }
    }

    pub fn get(&self, id: TargetId) -> Result<&E, AccessError> {
        self.map.get(&id).ok_or_else(|| not_ours(self.owner, id))
    }

    pub fn get_mut(&mut self, id: TargetId) -> Result<&mut E, AccessError> {
        let owner = self.owner;
        self.map.get_mut(&id).ok_or_else(|| not_ours(owner, id))
    }

    /// Take the entry out (to borrow it beside the check's other fields); [`Self::put`] it
    /// back.
    pub fn take(&mut self, id: TargetId) -> Result<E, AccessError> {
        self.map.remove(&id).ok_or_else(|| not_ours(self.owner, id))
    }

    pub fn put(&mut self, id: TargetId, e: E) {
        self.map.insert(id, e);
    }

    /// The process of target `id`, if it is one.
    pub fn process(&self, id: TargetId) -> Option<&Process> {
        self.map.get(&id).map(E::process)
    }

    /// The target's monitorable ranges from its maps ([`Process::target_ranges`]); the
    /// maps read counts in `cost`.
    pub fn ranges(
        &self,
        id: TargetId,
        cost: &mut MonitorCost,
    ) -> Result<Vec<AddrRange>, AccessError> {
        let ranges = self.get(id)?.process().target_ranges()?;
        cost.syscalls += 1;
        Ok(ranges)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn not_ours(owner: &str, id: TargetId) -> AccessError {
    AccessError::Other {
        target: id,
        msg: format!("not a target of {owner}"),
    }
}

impl<E: Entry> TargetTable for Targets<E> {
    /// A target already held under the same id (a pid reused before its old process was
    /// removed) is replaced: the old handle is closed.
    fn add(&mut self, proc: Process) -> TargetId {
        let id = proc.id();
        self.map.insert(id, E::new(proc));
        id
    }

    fn remove(&mut self, id: TargetId) -> Option<Process> {
        self.map.remove(&id).map(E::into_process)
    }
}

/// What a [`RefsCheck`] reads back at check time, after `clear_refs` at prepare.
pub trait RefsReader {
    /// The check's name, as `--ops NAME` takes it.
    const NAME: &'static str;
    /// Who holds the targets, for errors ("the smaps check").
    const OWNER: &'static str;
    /// What prepare writes to the target's `clear_refs`.
    const CLEAR: ClearRefs;

    /// What the reader keeps per target between checks (smaps: where its sliced read of a
    /// large target stands; nothing for soft-dirty).
    type State: Default + Send;

    /// The monitoring attributes the check works best with.
    fn default_attrs() -> Attrs {
        Attrs::default()
    }

    /// Answer each sample of `proc` (`out.len() == samples.len()`); returns the number of
    /// system calls made.
    fn read(
        proc: &mut Process,
        state: &mut Self::State,
        samples: &[SampleReq],
        out: &mut [Access],
    ) -> Result<u64, AccessError>;

    /// Correct the answers of samples whose bits an advice applied since the last check may
    /// have set without an access (`advised`, from [`AccessCheck::note_advised`]): a
    /// `MADV_COLLAPSE` maps its new huge page young and dirty (x86's page protections carry
    /// `_PAGE_ACCESSED`; `collapse_huge_page`, mm/khugepaged.c 6.12). Returns the number of
    /// system calls made. Default: the samples inside the advised ranges become Unknown;
    /// smaps overrides it (a whole VMA's answer).
    fn after_advice(
        _proc: &mut Process,
        samples: &[SampleReq],
        advised: &[AddrRange],
        out: &mut [Access],
    ) -> Result<u64, AccessError> {
        for (s, o) in samples.iter().zip(out.iter_mut()) {
            if advised.iter().any(|r| r.contains(s.addr)) {
                *o = Access::Unknown;
            }
        }
        Ok(0)
    }
}

/// A [`RefsCheck`]'s entry for one target: the process and its reader's state.
pub struct RefsEntry<S> {
    pub proc: Process,
    pub state: S,
}

impl<S: Default> Entry for RefsEntry<S> {
    fn new(proc: Process) -> Self {
        Self {
            proc,
            state: S::default(),
        }
    }
    fn process(&self) -> &Process {
        &self.proc
    }
    fn into_process(self) -> Process {
        self.proc
    }
}

/// An access check driven by `clear_refs`: prepare clears the bits of every page of the
/// target (one write that walks its page tables), check reads them back through `R`.
pub struct RefsCheck<R: RefsReader> {
    targets: Targets<RefsEntry<R::State>>,
    cost: MonitorCost,
    /// Ranges advised since each target's last check ([`RefsReader::after_advice`]).
    advised: BTreeMap<TargetId, Vec<AddrRange>>,
    reader: PhantomData<fn() -> R>,
}

impl<R: RefsReader> RefsCheck<R> {
    pub fn new() -> Self {
        Self {
            targets: Targets::new(R::OWNER),
            cost: MonitorCost::default(),
            advised: BTreeMap::new(),
            reader: PhantomData,
        }
    }
}

impl<R: RefsReader> Default for RefsCheck<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R: RefsReader> AccessCheck for RefsCheck<R> {
    fn name(&self) -> &'static str {
        R::NAME
    }

    fn default_attrs(&self) -> Attrs {
        R::default_attrs()
    }

    fn targets(&mut self) -> Option<&mut dyn TargetTable> {
        Some(&mut self.targets)
    }

    fn target_ranges(&mut self, id: TargetId) -> Result<Vec<AddrRange>, AccessError> {
        self.targets.ranges(id, &mut self.cost)
    }

    fn note_advised(&mut self, id: TargetId, ranges: &[AddrRange]) {
        self.advised
            .entry(id)
            .or_default()
            .extend_from_slice(ranges);
    }

    fn prepare(&mut self, id: TargetId, _samples: &mut [SampleReq]) -> Result<(), AccessError> {
        self.targets.get(id)?.proc.clear_refs(R::CLEAR)?;
        self.cost.syscalls += 1;
        Ok(())
    }

    fn check(
        &mut self,
        id: TargetId,
        samples: &[SampleReq],
        out: &mut [Access],
    ) -> Result<(), AccessError> {
        let e = self.targets.get_mut(id)?;
        let mut calls = R::read(&mut e.proc, &mut e.state, samples, out)?;
        if let Some(advised) = self.advised.remove(&id) {
            calls += R::after_advice(&mut e.proc, samples, &advised, out)?;
        }
        self.cost.syscalls += calls;
        self.cost.samples += samples.len() as u64;
        Ok(())
    }

    fn cost(&self) -> MonitorCost {
        self.cost
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kernel::pidfd::PidfdError;
    use crate::sysroot::SysRoot;
    use std::path::PathBuf;

    #[test]
    fn residency_answers_for_pages_absent_at_the_start() {
        use crate::kernel::pagemap::{PM_PRESENT, PM_SOFT_DIRTY, PM_SWAP, PM_UFFD_WP};
        let e = PagemapEntry;
        let none = e(0);
        let swap = e(PM_SWAP | 1 | (40 << 5));
        let migration = e(PM_SWAP | 25 | (0x1234 << 5));
        assert!(absent_at_start(none) && absent_at_start(swap));
        assert!(absent_at_start(e(PM_SWAP))); // not root: type and offset read 0
        assert!(!absent_at_start(e(PM_PRESENT)));
        assert!(!absent_at_start(migration));
        assert!(!absent_at_start(e(PM_SWAP | PM_UFFD_WP)));
        // Still out: not accessed (soft-dirty may change under another tool: not a move).
        assert_eq!(absent_answer(none, Some(none)), Access::NotAccessed);
        assert_eq!(absent_answer(swap, Some(swap)), Access::NotAccessed);
        assert_eq!(
            absent_answer(swap, Some(e(swap.0 | PM_SOFT_DIRTY))),
            Access::NotAccessed
        );
        assert_eq!(
            absent_answer(e(PM_SWAP), Some(e(PM_SWAP))),
            Access::NotAccessed
        );
        // Faulted in: accessed.
        assert_eq!(
            absent_answer(none, Some(e(PM_PRESENT | 7))),
            Access::Accessed
        );
        assert_eq!(absent_answer(swap, Some(e(PM_PRESENT))), Access::Accessed);
        // Moved meanwhile: in memory in between (another slot), discarded, migrating.
        assert_eq!(
            absent_answer(swap, Some(e(PM_SWAP | 1 | (41 << 5)))),
            Access::Unknown
        );
        assert_eq!(absent_answer(swap, Some(none)), Access::Unknown);
        assert_eq!(absent_answer(none, Some(swap)), Access::Unknown);
        assert_eq!(absent_answer(swap, Some(migration)), Access::Unknown);
        assert_eq!(absent_answer(none, None), Access::Unknown);
        // Not absent at the start: no evidence.
        assert_eq!(absent_answer(e(PM_PRESENT), Some(none)), Access::Unknown);
        assert_eq!(absent_answer(migration, Some(migration)), Access::Unknown);
    }

    #[test]
    fn process_errors_map_to_the_target_they_name() {
        let gone: AccessError = ProcessError::Gone { pid: 42 }.into();
        assert!(
            matches!(gone, AccessError::TargetGone(TargetId(42))),
            "{gone}"
        );
        let gone: AccessError = ProcessError::NoSuchProcess { pid: 7 }.into();
        assert!(
            matches!(gone, AccessError::TargetGone(TargetId(7))),
            "{gone}"
        );
        let perm: AccessError = ProcessError::Permission {
            pid: 9,
            path: PathBuf::from("/proc/9/maps"),
        }
        .into();
        match perm {
            AccessError::Permission { target, what } => {
                assert_eq!(target, TargetId(9));
                assert!(what.contains("/proc/9/maps"), "{what}");
            }
            e => panic!("{e}"),
        }
        let other: AccessError = ProcessError::Io {
            pid: 5,
            path: PathBuf::from("/proc/5/smaps"),
            source: std::io::Error::from_raw_os_error(libc::EIO),
        }
        .into();
        assert!(
            matches!(&other, AccessError::Other { target: TargetId(5), msg } if msg.contains("/proc/5/smaps")),
            "{other}"
        );
        let init: AccessError = ProcessError::Init.into();
        assert!(matches!(
            init,
            AccessError::Other {
                target: TargetId(1),
                ..
            }
        ));
        let pidfd_gone: AccessError = ProcessError::Pidfd {
            pid: 3,
            source: PidfdError::NoSuchProcess(3),
        }
        .into();
        assert!(matches!(pidfd_gone, AccessError::TargetGone(TargetId(3))));
    }

    /// A child that sleeps until killed, opened as a target.
    pub(crate) struct Child(pub std::process::Child);
    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    pub(crate) fn sleeper() -> (Child, Process) {
        let c = Child(
            std::process::Command::new("sleep")
                .arg("30")
                .stdin(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let p = Process::open(&SysRoot::host(), c.0.id(), false).unwrap();
        (c, p)
    }

    #[test]
    fn the_table_adds_replaces_and_removes_targets() {
        let (c, p) = sleeper();
        let pid = c.0.id();
        let mut t: Targets = Targets::new("the test check");
        assert!(t.is_empty());
        let e = t.get(TargetId(pid)).err().unwrap();
        assert_eq!(
            e.to_string(),
            format!("target {pid}: not a target of the test check")
        );
        assert_eq!(t.add(p), TargetId(pid));
        assert_eq!(t.len(), 1);
        assert_eq!(t.process(TargetId(pid)).unwrap().pid(), pid);
        // The same pid again replaces the old handle.
        let again = Process::open(&SysRoot::host(), pid, false).unwrap();
        assert_eq!(t.add(again), TargetId(pid));
        assert_eq!(t.len(), 1);
        let e = t.take(TargetId(pid)).unwrap();
        assert!(t.get_mut(TargetId(pid)).is_err());
        t.put(TargetId(pid), e);
        assert_eq!(t.remove(TargetId(pid)).unwrap().pid(), pid);
        assert!(t.remove(TargetId(pid)).is_none());
        assert!(t.is_empty());
    }

    /// Answers `Accessed` for every sample; one "syscall" per check.
    struct AllAccessed;
    impl RefsReader for AllAccessed {
        const NAME: &'static str = "all";
        const OWNER: &'static str = "the test check";
        const CLEAR: ClearRefs = ClearRefs::All;
        type State = ();
        fn read(
            _: &mut Process,
            _: &mut (),
            _: &[SampleReq],
            out: &mut [Access],
        ) -> Result<u64, AccessError> {
            out.iter_mut().for_each(|o| *o = Access::Accessed);
            Ok(1)
        }
    }

    #[test]
    fn a_refs_check_takes_targets_through_the_trait() {
        let (c, p) = sleeper();
        let id = TargetId(c.0.id());
        let mut check = RefsCheck::<AllAccessed>::new();
        let ops: &mut dyn AccessCheck = &mut check;
        assert!(matches!(
            ops.target_ranges(id),
            Err(AccessError::Other { target, .. }) if target == id
        ));
        assert_eq!(ops.add_target(p).unwrap(), id);
        assert!(!ops.target_ranges(id).unwrap().is_empty());
        let s = [SampleReq {
            region: AddrRange::new(0, 4096),
            addr: 0,
        }];
        let mut out = [Access::Unknown];
        ops.check(id, &s, &mut out).unwrap();
        assert_eq!(out, [Access::Accessed]);
        assert_eq!((ops.cost().samples, ops.cost().syscalls), (1, 2));
        assert_eq!(ops.remove_target(id).unwrap().pid(), id.0);
        assert!(ops.remove_target(id).is_none());
        assert!(ops.check(id, &s, &mut out).is_err());
    }
}
