//! Working-set size estimates from a snapshot.

use crate::snapshot::Snapshot;

/// Estimated working-set size of a snapshot, damo's way: the bytes of regions with at least
/// `min_nr_accesses` accesses (use 1: any access in the aggregation interval). Mid-aggregation
/// snapshots use the moving sum (`nr_accesses_bp / 10000`).
pub fn wss_bytes(snapshot: &Snapshot, min_nr_accesses: u32) -> u64 {
    snapshot
        .targets
        .iter()
        .flat_map(|t| t.regions.iter())
        .filter(|r| {
            let nr = if snapshot.aggregated {
                r.nr_accesses
            } else {
                r.nr_accesses_bp / 10_000
            };
            nr >= min_nr_accesses
        })
        .map(|r| r.size())
        .sum()
}

/// Estimated bytes accessed per sampling interval: each region's size weighted by its access
/// frequency (`nr_accesses / max_nr_accesses`; mid-aggregation the moving sum). A region
/// straddling the edge of a hot set contributes about its hot part instead of its whole
/// size, so this estimate does not jump when a merge folds a little hot memory into a big
/// cold region (which makes [`wss_bytes`] spike for one aggregation). For memory touched
/// every sampling interval it estimates the working-set size.
pub fn wss_weighted_bytes(snapshot: &Snapshot) -> u64 {
    let max = snapshot.max_nr_accesses().max(1) as u128;
    snapshot
        .targets
        .iter()
        .flat_map(|t| t.regions.iter())
        .map(|r| {
            let bp = if snapshot.aggregated {
                r.nr_accesses as u128 * 10_000
            } else {
                r.nr_accesses_bp as u128
            };
            (r.size() as u128 * bp.min(max * 10_000) / (max * 10_000)) as u64
        })
        .sum()
}
