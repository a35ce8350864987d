//! Thin readers and pure parsers, one module per kernel interface. Parsers take bytes or a
//! `BufRead` and return values; readers open the file under a [`crate::SysRoot`] and call them.

pub mod cgroup;
pub mod clear_refs;
pub mod damon_sysfs;
pub mod madvise;
pub mod maps;
pub mod meminfo;
pub mod page_idle;
pub mod pagemap;
pub mod pidfd;
pub mod psi;
pub mod smaps;
pub mod status;
pub mod swap;
pub mod zram;
