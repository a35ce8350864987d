//! The kinds of access primitive (as `enum damon_ops_id` names the kernel's operations
//! sets, include/linux/damon.h 6.12): one [`OpsKind`] per primitive, with its name
//! (`--ops NAME`), its rank for auto-detection, its default attributes, whether it is usable
//! here and why not, and how it is built. This is the one module that knows every primitive;
//! the primitives know neither each other nor this enum.
//!
//! Auto-detection picks the finest usable one, in rank order
//! page_idle > damon > probe > soft_dirty > smaps. `paddr` (physical memory, chosen by
//! `--paddr`) and `sim` are never picked automatically: they watch no process.

use crate::access::{AccessCheck, AccessError};
use crate::attrs::Attrs;
use crate::ops::damon::{KernelDamon, KernelDamonError};
use crate::ops::paddr::{PAddr, PaddrError};
use crate::ops::page_idle::PageIdle;
use crate::ops::probe::{Probe, ProbeConfig};
use crate::ops::sim::SimOps;
use crate::ops::smaps::SmapsCheck;
use crate::ops::soft_dirty::SoftDirty;
use crate::ops::{damon, paddr, page_idle, probe, probe_host, smaps, soft_dirty};
use crate::process::Process;
use crate::region::TargetId;
use crate::sysroot::SysRoot;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// One access primitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpsKind {
    /// Idle page tracking: the PTE Accessed bits, per sample page.
    PageIdle,
    /// The kernel's own DAMON via sysfs: a snapshot source, not an access check.
    Damon,
    /// The refault probe: page a sample out, watch whether it comes back.
    Probe,
    /// Soft-dirty bits: writes only.
    SoftDirty,
    /// smaps `Referenced`: whole mappings only.
    Smaps,
    /// Physical memory: idle page tracking over PFNs (kernel DAMON's `paddr`).
    PAddr,
    /// A simulated address space (tests, benches, demos).
    Sim,
}

/// The rank of a kind that is never picked automatically.
const NEVER: u32 = u32::MAX;

impl OpsKind {
    /// Every kind, in auto order (by rank).
    pub const ALL: [OpsKind; 7] = [
        OpsKind::PageIdle,
        OpsKind::Damon,
        OpsKind::Probe,
        OpsKind::SoftDirty,
        OpsKind::Smaps,
        OpsKind::PAddr,
        OpsKind::Sim,
    ];

    /// The name `--ops NAME` takes.
    pub fn name(self) -> &'static str {
        match self {
            OpsKind::PageIdle => "page_idle",
            OpsKind::Damon => "damon",
            OpsKind::Probe => "probe",
            OpsKind::SoftDirty => "soft_dirty",
            OpsKind::Smaps => "smaps",
            OpsKind::PAddr => "paddr",
            OpsKind::Sim => "sim",
        }
    }

    /// Rank for auto-detection: the usable kind with the lowest rank wins.
    pub fn rank(self) -> u32 {
        match self {
            OpsKind::PageIdle => 10,
            OpsKind::Damon => 20,
            OpsKind::Probe => 30,
            OpsKind::SoftDirty => 40,
            OpsKind::Smaps => 50,
            OpsKind::PAddr => 60,
            OpsKind::Sim => NEVER,
        }
    }

    /// Whether auto-detection may pick this kind at all: not `paddr` (physical memory,
    /// not processes: `--paddr` chooses it) nor `sim`.
    pub fn auto_pickable(self) -> bool {
        self.rank() != NEVER && self != OpsKind::PAddr
    }

    /// What it sees: "page (PTE Accessed bit)", "page (writes only)", "VMA", ...
    pub fn granularity(self) -> &'static str {
        match self {
            OpsKind::PageIdle => "page (PTE Accessed bit)",
            OpsKind::Damon => "region (kernel DAMON vaddr, PTE Accessed bits)",
            OpsKind::Probe => {
                "page (one sampled page per region, paged out and watched for refault)"
            }
            OpsKind::SoftDirty => "page (writes only)",
            OpsKind::Smaps => "VMA (whole mappings only)",
            OpsKind::PAddr => "physical page (Accessed bits of every mapping, through rmap)",
            OpsKind::Sim => "page (simulated)",
        }
    }

    /// One line for people.
    pub fn description(self) -> &'static str {
        match self {
            OpsKind::PageIdle => "idle page tracking: marks each sample page idle and reads it back, the Accessed bits kernel DAMON reads",
            OpsKind::Damon => "the kernel's own DAMON via sysfs: a kdamond monitors the targets, madvd reads its regions back",
            OpsKind::Probe => "refault probe: MADV_PAGEOUT a sample page, then pagemap says whether it came back",
            OpsKind::SoftDirty => "soft-dirty bits (clear_refs 4 + pagemap bit 55): sees WRITES ONLY, reads look idle",
            OpsKind::Smaps => "smaps Referenced after clear_refs 1: which mappings were touched, on any kernel, no swap needed",
            OpsKind::PAddr => "physical address space (kernel DAMON's paddr): idle page tracking over PFNs of System RAM, owners from kpagecgroup; `madvd monitor --paddr`",
            OpsKind::Sim => "simulated address space with ground truth (tests, benches, demos); never picked automatically",
        }
    }

    /// How output names the kind: its name, and what it cannot see.
    pub fn label(self) -> &'static str {
        match self {
            OpsKind::SoftDirty => "soft_dirty (writes only)",
            k => k.name(),
        }
    }

    /// The monitoring attributes the kind works best with (a costly check samples less often
    /// than the kernel's 5 ms / 100 ms); policy files and CLI flags override these.
    pub fn default_attrs(self) -> Attrs {
        match self {
            OpsKind::Probe => probe::default_attrs(),
            OpsKind::Smaps => smaps::default_attrs(),
            OpsKind::PageIdle
            | OpsKind::Damon
            | OpsKind::SoftDirty
            | OpsKind::PAddr
            | OpsKind::Sim => Attrs::default(),
        }
    }

    /// Why the kind is not usable here, if it is not. Reads only (soft_dirty tries itself on
    /// a page of madvd's own).
    pub fn why_not(self, root: &SysRoot) -> Option<String> {
        match self {
            OpsKind::PageIdle => page_idle::why_not(root),
            OpsKind::Damon => damon::why_not(root),
            OpsKind::Probe => probe_host::why_not(root),
            OpsKind::SoftDirty => soft_dirty::why_not(root),
            OpsKind::Smaps => smaps::why_not(root),
            OpsKind::PAddr => paddr::why_not(root),
            OpsKind::Sim => None,
        }
    }

    /// Whether the kind can be used here, and why not (`madvd ops` prints these).
    pub fn status(self, root: &SysRoot) -> OpsStatus {
        let why_not = self.why_not(root);
        OpsStatus {
            kind: self,
            usable: why_not.is_none(),
            why_not,
            granularity: self.granularity(),
            description: self.description(),
            rank: self.rank(),
        }
    }

    /// Build the kind over `procs`: an access check holding them as targets, or (for
    /// `damon`) a kdamond started on their pids with `attrs` (the processes are held until
    /// it took the pids, so the pids name them). `attrs` is not used by the access checks:
    /// the monitor that samples through them gets its attributes on its own.
    pub fn build(
        self,
        root: &SysRoot,
        procs: Vec<Process>,
        attrs: Attrs,
    ) -> Result<Built, BuildError> {
        if self == OpsKind::Damon {
            let ids: Vec<TargetId> = procs.iter().map(Process::id).collect();
            let kd = KernelDamon::start(root, &ids, attrs)?;
            drop(procs);
            return Ok(Built::Kernel(kd));
        }
        self.build_check(root, procs).map(Built::Check)
    }

    /// Build the access check of this kind over `procs`. `damon` has none: it is a snapshot
    /// source ([`Self::build`]). `paddr` takes no process: with none it monitors the biggest
    /// System RAM range (user ranges: [`PAddr::new`]).
    pub fn build_check(
        self,
        root: &SysRoot,
        procs: Vec<Process>,
    ) -> Result<Box<dyn AccessCheck + Send>, BuildError> {
        let err = |source| BuildError::Check { kind: self, source };
        let mut check: Box<dyn AccessCheck + Send> = match self {
            OpsKind::PageIdle => Box::new(PageIdle::new(root).map_err(err)?),
            OpsKind::Probe => Box::new(Probe::new(root.clone(), ProbeConfig::default())),
            OpsKind::SoftDirty => Box::new(SoftDirty::new()),
            OpsKind::Smaps => Box::new(SmapsCheck::new()),
            OpsKind::Sim => Box::new(SimOps::new()),
            OpsKind::PAddr if procs.is_empty() => Box::new(PAddr::new(root, None)?),
            OpsKind::PAddr => return Err(BuildError::Physical),
            OpsKind::Damon => return Err(BuildError::SnapshotSource),
        };
        for p in procs {
            check.add_target(p).map_err(err)?;
        }
        Ok(check)
    }
}

impl fmt::Display for OpsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A name `--ops` does not know.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("unknown access primitive `{name}` (known: {known})")]
pub struct UnknownOps {
    pub name: String,
    known: String,
}

impl FromStr for OpsKind {
    type Err = UnknownOps;

    /// A kind by its name (`page_idle`, `damon`, `probe`, `soft_dirty`, `smaps`, `sim`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OpsKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownOps {
                name: s.to_owned(),
                known: OpsKind::ALL.map(OpsKind::name).join(", "),
            })
    }
}

impl Serialize for OpsKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for OpsKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Whether an access primitive can be used here, and why not. `madvd ops` prints these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpsStatus {
    /// The kind, written as the name `--ops NAME` takes.
    #[serde(rename = "name")]
    pub kind: OpsKind,
    pub usable: bool,
    /// Why it is not usable (kernel config, permission, no swap, busy, ...), if it is not.
    pub why_not: Option<String>,
    /// What it sees: "page (PTE Accessed bit)", "page (writes only)", "VMA", ...
    pub granularity: &'static str,
    /// One line for people.
    pub description: &'static str,
    /// Rank for auto-detection: the usable one with the lowest rank wins.
    pub rank: u32,
}

/// The status of every kind here, in auto order.
pub fn detect(root: &SysRoot) -> Vec<OpsStatus> {
    OpsKind::ALL.iter().map(|k| k.status(root)).collect()
}

/// Why no kind could be chosen.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PickError {
    #[error("access primitive `{kind}` is not usable here: {why}")]
    NotUsable { kind: OpsKind, why: String },
    #[error("no access primitive is usable here: {0}")]
    NoneUsable(String),
}

/// The auto pick among `statuses`: the usable one with the lowest rank, `sim` excluded.
pub fn pick_auto(statuses: &[OpsStatus]) -> Result<&OpsStatus, PickError> {
    let candidates = statuses.iter().filter(|s| s.kind.auto_pickable());
    candidates
        .clone()
        .filter(|s| s.usable)
        .min_by_key(|s| s.rank)
        .ok_or_else(|| {
            PickError::NoneUsable(
                candidates
                    .map(|s| format!("{}: {}", s.kind, s.why_not.as_deref().unwrap_or("?")))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
}

/// The kind to use here: `forced` (it must be usable), else the auto pick.
pub fn choose(root: &SysRoot, forced: Option<OpsKind>) -> Result<OpsKind, PickError> {
    match forced {
        Some(kind) => match kind.why_not(root) {
            None => Ok(kind),
            Some(why) => Err(PickError::NotUsable { kind, why }),
        },
        None => pick_auto(&detect(root)).map(|s| s.kind),
    }
}

/// What [`OpsKind::build`] made: the access check madvd's own monitor samples through, or a
/// running kdamond that hands back whole regions (kernel DAMON).
pub enum Built {
    Check(Box<dyn AccessCheck + Send>),
    Kernel(KernelDamon),
}

/// Why a kind could not be built.
#[derive(Debug, Error)]
pub enum BuildError {
    /// The check could not be set up, or refused a target.
    #[error("{kind}: {source}")]
    Check {
        kind: OpsKind,
        #[source]
        source: AccessError,
    },
    #[error("kernel DAMON: {0}")]
    Kernel(#[from] KernelDamonError),
    #[error("kernel DAMON is a snapshot source, not an access check")]
    SnapshotSource,
    #[error("paddr: {0}")]
    Paddr(#[from] PaddrError),
    #[error("paddr monitors physical memory, not processes: use `madvd monitor --paddr`")]
    Physical,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `kind`'s status with `usable` as given (the reasons are made up).
    fn st(kind: OpsKind, usable: bool) -> OpsStatus {
        let mut s = kind.status(&SysRoot::under("/nonexistent"));
        s.usable = usable;
        s.why_not = (!usable).then(|| format!("{kind} off"));
        s
    }

    #[test]
    fn names_parse_back_and_unknown_names_list_the_known() {
        for k in OpsKind::ALL {
            assert_eq!(k.name().parse::<OpsKind>(), Ok(k));
            assert_eq!(k.to_string(), k.name());
        }
        let e = "nope".parse::<OpsKind>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown access primitive `nope` (known: page_idle, damon, probe, soft_dirty, smaps, paddr, sim)"
        );
        assert!("auto".parse::<OpsKind>().is_err());
        assert_eq!(format!("{:<11}|", OpsKind::Probe), "probe      |");
    }

    #[test]
    fn all_is_in_rank_order_and_only_paddr_and_sim_are_never_auto() {
        let ranks: Vec<u32> = OpsKind::ALL.iter().map(|k| k.rank()).collect();
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{ranks:?}");
        let never: Vec<_> = OpsKind::ALL
            .into_iter()
            .filter(|k| !k.auto_pickable())
            .collect();
        assert_eq!(never, [OpsKind::PAddr, OpsKind::Sim]);
    }

    #[test]
    fn auto_picks_the_lowest_usable_rank_never_sim() {
        use OpsKind::*;
        let v = [
            st(PageIdle, false),
            st(Damon, false),
            st(Probe, true),
            st(Smaps, true),
            st(Sim, true),
        ];
        assert_eq!(pick_auto(&v).unwrap().kind, Probe);
        let v = [st(PageIdle, true), st(Probe, true)];
        assert_eq!(pick_auto(&v).unwrap().kind, PageIdle);
        let v = [st(Probe, false), st(Sim, true)];
        assert_eq!(
            pick_auto(&v).unwrap_err(),
            PickError::NoneUsable("probe: probe off".into())
        );
    }

    #[test]
    fn forced_must_be_usable() {
        let dir = tempfile::tempdir().unwrap();
        let empty = SysRoot::under(dir.path());
        assert_eq!(choose(&empty, Some(OpsKind::Sim)), Ok(OpsKind::Sim));
        let e = choose(&empty, Some(OpsKind::Smaps)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "access primitive `smaps` is not usable here: no /proc/PID/clear_refs or smaps (kernel without CONFIG_PROC_PAGE_MONITOR)"
        );
        // Auto on an empty tree: nothing usable (sim is never picked), each reason listed.
        let e = choose(&empty, None).unwrap_err().to_string();
        assert!(
            e.starts_with("no access primitive is usable here: page_idle: "),
            "{e}"
        );
        assert!(!e.contains("sim:"), "{e}");
    }

    #[test]
    fn detect_lists_every_kind_in_auto_order() {
        let v = detect(&SysRoot::host());
        let kinds: Vec<_> = v.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, OpsKind::ALL);
        assert!(v.iter().all(|s| s.usable == s.why_not.is_none()));
        assert!(v.iter().all(|s| s.rank == s.kind.rank()));
    }

    #[test]
    fn status_json_names_the_kind() {
        let s = OpsKind::SoftDirty.status(&SysRoot::under("/nonexistent"));
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["name"], "soft_dirty");
        assert_eq!(j["granularity"], "page (writes only)");
        assert!(j["description"].as_str().unwrap().contains("WRITES ONLY"));
        assert_eq!(j["usable"], false);
        assert!(j["why_not"].as_str().unwrap().contains("clear_refs"));
        // Fields in the order `madvd ops --json` has always printed them.
        let text = serde_json::to_string(&s).unwrap();
        let at: Vec<usize> = [
            "name",
            "usable",
            "why_not",
            "granularity",
            "description",
            "rank",
        ]
        .iter()
        .map(|k| text.find(&format!("\"{k}\":")).unwrap())
        .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(OpsKind::SoftDirty.label(), "soft_dirty (writes only)");
        assert_eq!(OpsKind::PageIdle.label(), "page_idle");
    }

    /// Every check the kinds build answers to the kind's name and defaults.
    #[test]
    fn built_checks_carry_their_kinds_name_and_defaults() {
        let host = SysRoot::host();
        for k in [
            OpsKind::Probe,
            OpsKind::SoftDirty,
            OpsKind::Smaps,
            OpsKind::Sim,
        ] {
            let c = k.build_check(&host, Vec::new()).unwrap();
            assert_eq!(c.name(), k.name());
            assert_eq!(c.default_attrs(), k.default_attrs(), "{k}");
        }
        assert!(matches!(
            OpsKind::Damon.build_check(&host, Vec::new()),
            Err(BuildError::SnapshotSource)
        ));
    }

    /// The checks over live processes take and give back targets through the trait; the
    /// simulated one refuses a process.
    #[test]
    fn built_checks_add_and_remove_targets() {
        let host = SysRoot::host();
        for k in [OpsKind::Probe, OpsKind::SoftDirty, OpsKind::Smaps] {
            let (child, p) = crate::ops::common::tests::sleeper();
            let id = TargetId(child.0.id());
            let mut c = k.build_check(&host, vec![p]).unwrap();
            assert!(!c.target_ranges(id).unwrap().is_empty(), "{k}");
            assert_eq!(c.remove_target(id).unwrap().pid(), id.0, "{k}");
            assert!(c.remove_target(id).is_none(), "{k}");
            assert!(c.target_ranges(id).is_err(), "{k}");
            let again = Process::open(&host, id.0, false).unwrap();
            assert_eq!(c.add_target(again).unwrap(), id, "{k}");
            assert!(!c.target_ranges(id).unwrap().is_empty(), "{k}");
        }
        let (child, p) = crate::ops::common::tests::sleeper();
        let e = OpsKind::Sim.build_check(&host, vec![p]).err().unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "sim: target {}: the sim check samples no live process",
                child.0.id()
            )
        );
    }

    #[test]
    fn building_without_the_interface_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let empty = SysRoot::under(dir.path());
        let e = OpsKind::PageIdle
            .build(&empty, Vec::new(), Attrs::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("page_idle: ") && e.contains("bitmap"), "{e}");
        let e = OpsKind::Damon
            .build(&empty, Vec::new(), Attrs::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("kernel DAMON: "), "{e}");
        // paddr: root first, then its files (the bitmap); never processes.
        let e = OpsKind::PAddr
            .build_check(&empty, Vec::new())
            .err()
            .unwrap()
            .to_string();
        let want = if crate::kernel::host::is_root() {
            "page_idle/bitmap"
        } else {
            "needs root"
        };
        assert!(e.starts_with("paddr: ") && e.contains(want), "{e}");
        let (_child, p) = crate::ops::common::tests::sleeper();
        let e = OpsKind::PAddr.build_check(&empty, vec![p]).err().unwrap();
        assert_eq!(
            e.to_string(),
            "paddr monitors physical memory, not processes: use `madvd monitor --paddr`"
        );
    }
}
