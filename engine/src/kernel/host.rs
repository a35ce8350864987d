//! What every layer asks of the running host, said once: the page size, whether madvd runs as
//! root, and the kernel's `ALIGN()` / `ALIGN_DOWN()` (include/linux/align.h, Linux 6.12) that
//! go with page and region sizes. The monitor, the schemes, the actuator, the access checks,
//! the front ends and the tests all use these.

/// The system page size (`sysconf(_SC_PAGESIZE)`); 4096 if sysconf gives no power of two.
pub fn page_size() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(p)) if p > 0 && (p as u64).is_power_of_two() => p as u64,
        _ => 4096,
    }
}

/// Whether madvd runs with effective uid 0 (what the root-only interfaces need: pagemap PFNs,
/// `/proc/kpageflags`, page_idle, DAMON sysfs, swapon).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `ALIGN_DOWN(x, a)`: `x` rounded down to a multiple of `a`. `a` is normally a power of two
/// (page, region and huge-page sizes); any other `a` rounds down all the same, and `a` ≤ 1
/// leaves `x` as it is (never a panic).
pub const fn align_down(x: u64, a: u64) -> u64 {
    if a <= 1 {
        x
    } else if a.is_power_of_two() {
        x & !(a - 1)
    } else {
        x - x % a
    }
}

/// `ALIGN(x, a)`: `x` rounded up to a multiple of `a`; near `u64::MAX`, where the next
/// multiple does not exist, the last multiple that does (saturating, never a wrap to 0).
pub const fn align_up(x: u64, a: u64) -> u64 {
    if a <= 1 {
        x
    } else {
        align_down(x.saturating_add(a - 1), a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_rounds_to_powers_of_two_and_others() {
        assert_eq!(align_down(0x1fff, 4096), 0x1000);
        assert_eq!(align_up(0x1001, 4096), 0x2000);
        assert_eq!(align_up(0x2000, 4096), 0x2000);
        assert_eq!(align_up(3 << 20, 2 << 20), 4 << 20);
        assert_eq!(align_down(10, 3), 9);
        assert_eq!(align_up(10, 3), 12);
        assert_eq!((align_down(7, 0), align_up(7, 1)), (7, 7));
        // No wrap at the top of the address space.
        assert_eq!(align_up(u64::MAX - 5, 4096), !4095);
    }

    #[test]
    fn page_size_is_a_power_of_two() {
        assert!(page_size().is_power_of_two() && page_size() >= 4096);
    }
}
