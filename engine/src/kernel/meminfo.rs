//! `/proc/meminfo` and `/sys/devices/system/node/nodeN/meminfo`.
//!
//! Parsing is pure ([`parse`]); the readers ([`read_system`], [`read_node`], [`list_nodes`])
//! open the file under a [`SysRoot`] and call it. Values are kept in bytes (the kernel
//! prints `kB`, meaning KiB), fields without a unit (`HugePages_Total`) as plain numbers.

use crate::sysroot::SysRoot;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

use super::error::ReadError;

#[derive(Debug, Error)]
pub enum MeminfoError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{path}: field {field} is missing")]
    Missing { path: PathBuf, field: &'static str },
}

/// The fields of one meminfo file, keyed by the kernel's names (`MemTotal`, `MemFree`, ...),
/// `kB` values converted to bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub fields: BTreeMap<String, u64>,
}

impl MemInfo {
    pub fn get(&self, name: &str) -> Option<u64> {
        self.fields.get(name).copied()
    }
    pub fn mem_total(&self) -> Option<u64> {
        self.get("MemTotal")
    }
    pub fn mem_free(&self) -> Option<u64> {
        self.get("MemFree")
    }
    pub fn mem_available(&self) -> Option<u64> {
        self.get("MemAvailable")
    }
    pub fn swap_total(&self) -> Option<u64> {
        self.get("SwapTotal")
    }
    pub fn swap_free(&self) -> Option<u64> {
        self.get("SwapFree")
    }
    /// Free memory rate in per-mille, as DAMOS watermarks measure it
    /// (`damos_get_wmark_metric_value()`, mm/damon/core.c 6.12: free pages × 1000 / totalram).
    pub fn free_mem_rate_permille(&self) -> Option<u64> {
        let total = self.mem_total()?;
        let free = self.mem_free()?;
        (total > 0).then(|| free.saturating_mul(1000) / total)
    }
    /// Used memory in basis points of the total, `(total − free) × 10000 / total`
    /// (`damos_get_node_mem_bp()`, mm/damon/core.c 6.16, uses totalram − freeram).
    pub fn used_bp(&self) -> Option<u64> {
        let total = self.mem_total()?;
        let free = self.mem_free()?;
        (total > 0).then(|| total.saturating_sub(free).saturating_mul(10_000) / total)
    }
    /// Free memory in basis points of the total.
    pub fn free_bp(&self) -> Option<u64> {
        let total = self.mem_total()?;
        let free = self.mem_free()?;
        (total > 0).then(|| free.min(total).saturating_mul(10_000) / total)
    }
}

/// Parse meminfo text: lines `Name:  value [kB]`, optionally prefixed `Node N ` (the per-node
/// files). `path` only names the source in errors.
pub fn parse(text: &[u8], path: &Path) -> Result<MemInfo, MeminfoError> {
    let text = String::from_utf8_lossy(text);
    let mut info = MemInfo::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let err = |msg: String| {
            MeminfoError::from(ReadError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                msg,
            })
        };
        // Per-node files: "Node 0 MemTotal:       16384 kB".
        let line = match line.strip_prefix("Node ") {
            Some(rest) => {
                let (_, after) = rest
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| err(format!("bad node line {raw:?}")))?;
                after.trim_start()
            }
            None => line,
        };
        let (name, rest) = line
            .split_once(':')
            .ok_or_else(|| err(format!("no `:` in {raw:?}")))?;
        let mut parts = rest.split_whitespace();
        let num = parts
            .next()
            .ok_or_else(|| err(format!("no value for {name}")))?;
        let value: u64 = num
            .parse()
            .map_err(|_| err(format!("bad value {num:?} for {name}")))?;
        let value = match parts.next() {
            None => value,
            Some("kB") => value.saturating_mul(1024),
            Some(u) => return Err(err(format!("unknown unit {u:?} for {name}"))),
        };
        info.fields.insert(name.trim().to_string(), value);
    }
    Ok(info)
}

fn read_file(path: PathBuf) -> Result<MemInfo, MeminfoError> {
    let bytes = std::fs::read(&path).map_err(|source| ReadError::Io {
        path: path.clone(),
        source,
    })?;
    let info = parse(&bytes, &path)?;
    for field in ["MemTotal", "MemFree"] {
        if info.get(field).is_none() {
            return Err(MeminfoError::Missing { path, field });
        }
    }
    Ok(info)
}

/// `<proc>/meminfo`.
pub fn read_system(root: &SysRoot) -> Result<MemInfo, MeminfoError> {
    read_file(root.proc_file("meminfo"))
}

/// `<sys>/devices/system/node/node<N>/meminfo`.
pub fn node_path(root: &SysRoot, node: u32) -> PathBuf {
    root.sys_file(&format!("devices/system/node/node{node}/meminfo"))
}

/// The per-node meminfo of NUMA node `node`.
pub fn read_node(root: &SysRoot, node: u32) -> Result<MemInfo, MeminfoError> {
    read_file(node_path(root, node))
}

/// The NUMA nodes that have a meminfo file, sorted. Empty when the kernel has no node directory.
pub fn list_nodes(root: &SysRoot) -> Vec<u32> {
    let dir = root.sys_file("devices/system/node");
    let mut nodes: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("node")?.parse().ok())
        .filter(|n| node_path(root, *n).exists())
        .collect();
    nodes.sort_unstable();
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSTEM: &str = "MemTotal:       24576000 kB\nMemFree:         4096000 kB\nMemAvailable:   12288000 kB\nSwapTotal:             0 kB\nHugePages_Total:       0\n";
    const NODE: &str = "Node 0 MemTotal:        6514892 kB\nNode 0 MemFree:         4112268 kB\nNode 0 MemUsed:         2402624 kB\n";

    #[test]
    fn parses_system_meminfo_in_bytes() {
        let m = parse(SYSTEM.as_bytes(), Path::new("meminfo")).unwrap();
        assert_eq!(m.mem_total(), Some(24_576_000 * 1024));
        assert_eq!(m.mem_free(), Some(4_096_000 * 1024));
        assert_eq!(m.mem_available(), Some(12_288_000 * 1024));
        assert_eq!(m.get("HugePages_Total"), Some(0));
        // 4096000 / 24576000 = 0.1666.. -> 166 per-mille, 1666 bp free, 8333 bp used.
        assert_eq!(m.free_mem_rate_permille(), Some(166));
        assert_eq!(m.free_bp(), Some(1666));
        assert_eq!(m.used_bp(), Some(8333));
    }

    #[test]
    fn parses_node_meminfo() {
        let m = parse(NODE.as_bytes(), Path::new("node0/meminfo")).unwrap();
        assert_eq!(m.mem_total(), Some(6_514_892 * 1024));
        assert_eq!(m.get("MemUsed"), Some(2_402_624 * 1024));
    }

    #[test]
    fn bad_lines_name_path_and_line() {
        let e = parse(b"MemTotal: 10 kB\nMemFree: x kB\n", Path::new("/p/meminfo")).unwrap_err();
        assert_eq!(e.to_string(), "/p/meminfo:2: bad value \"x\" for MemFree");
        let e = parse(b"MemTotal 10\n", Path::new("m")).unwrap_err();
        assert!(e.to_string().starts_with("m:1: no `:`"), "{e}");
        let e = parse(b"MemTotal: 10 MB\n", Path::new("m")).unwrap_err();
        assert!(e.to_string().contains("unknown unit"), "{e}");
    }

    #[test]
    fn readers_use_the_sysroot() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        std::fs::create_dir_all(&root.proc).unwrap();
        std::fs::write(root.proc_file("meminfo"), SYSTEM).unwrap();
        let nd = root.sys_file("devices/system/node/node0");
        std::fs::create_dir_all(&nd).unwrap();
        std::fs::write(nd.join("meminfo"), NODE).unwrap();
        std::fs::create_dir_all(root.sys_file("devices/system/node/node1")).unwrap(); // no meminfo
        assert_eq!(
            read_system(&root).unwrap().free_mem_rate_permille(),
            Some(166)
        );
        assert_eq!(
            read_node(&root, 0).unwrap().mem_free(),
            Some(4_112_268 * 1024)
        );
        assert!(matches!(
            read_node(&root, 1),
            Err(MeminfoError::Read(ReadError::Io { .. }))
        ));
        assert_eq!(list_nodes(&root), vec![0]);
        std::fs::write(root.proc_file("meminfo"), "MemTotal: 1 kB\n").unwrap();
        let e = read_system(&root).unwrap_err();
        assert!(e.to_string().ends_with("field MemFree is missing"), "{e}");
    }
}
