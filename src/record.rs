//! The record file (docs/record-format.md): JSON lines. Line 1 is the header (format name,
//! version, source, primitive, monitoring attrs); then one line per aggregation snapshot;
//! last, when the recording ended cleanly, an `end` line. Every line is flushed as it is
//! written, so a recording cut short (killed, disk full) keeps every complete line, and the
//! reader renders what is intact and names the first bad line as `path:line:column`.

use anyhow::{Context, Result};
use engine::ops::paddr::owners::CgroupBytes;
use engine::{AddrRange, Attrs, Snapshot};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "madvd-record";
/// 3: snapshots carry `seen` (the evidence of access per region); 2 did not, and reads as
/// before.
pub const VERSION: u32 = 3;

/// What was recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// Live processes.
    Pid { pids: Vec<u32>, comms: Vec<String> },
    /// The simulator (`engine::ops::sim`), with its scenario name.
    Sim { scenario: String, size: u64 },
    /// Physical memory (`madvd record --paddr`): the physical address ranges monitored.
    Paddr { ranges: Vec<AddrRange> },
}

/// Line 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`]; readers refuse a newer major version.
    pub version: u32,
    pub source: Source,
    /// The access primitive (`probe`, `sim`, `page_idle`, ...).
    pub ops: String,
    /// Monitoring attributes in force (intervals in µs). `max_nr_accesses` follows from them.
    pub attrs: Attrs,
    /// Wall-clock start, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// `uname -r` of the recording host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
}

/// One target's regions in a snapshot: `[start, end, nr_accesses, age]` each, sorted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameTarget {
    pub id: u32,
    pub regions: Vec<[u64; 4]>,
    /// The target's mappings (VMAs) at the snapshot, `[start, end)` each, sorted, adjacent
    /// ones merged: what `madvd replay` cuts advice at, as the live actuator does. Live
    /// records only; absent in simulator records and in records of older madvd.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mappings: Vec<[u64; 2]>,
    /// The ranges of those mappings with no page in memory (pagemap: neither present nor a
    /// special entry; swapped out or never touched), `[start, end)` each, sorted: in the first
    /// frame in which the target appears, live records only. `madvd replay` starts its
    /// residency model from them (advice over them is cut out as not resident, as live).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<[u64; 2]>,
    /// Per region (same order and length as `regions`), the accessed answers among the
    /// samples known in the aggregation (`Region::nr_seen`): the evidence of access, where
    /// `nr_accesses` also carries the earlier rate over Unknown answers. Version 3 on;
    /// empty in older records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen: Vec<u32>,
}

impl FrameTarget {
    /// Was region `i` accessed in this aggregation: a count, and (version 3 on) an accessed
    /// answer among its samples? With no `seen` recorded (an older record), its count is
    /// all there is: `nr_accesses > 0`.
    pub fn seen_accessed(&self, i: usize) -> bool {
        self.regions[i][2] > 0 && self.seen.get(i).is_none_or(|&s| s > 0)
    }
}

/// One aggregation snapshot (taken after merge, before reset, as schemes see it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Frame {
    /// Monitor time, µs since the recording started.
    pub t_us: u64,
    /// Aggregation number.
    pub aggr: u64,
    pub targets: Vec<FrameTarget>,
    /// Physical memory only: the snapshot's hot and cold bytes per memory cgroup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroups: Vec<CgroupBytes>,
}

/// The last line of a recording that ended cleanly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct End {
    pub snapshots: u64,
    pub t_us: u64,
    /// `duration`, `signal`, `targets_gone`.
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndLine {
    end: End,
}

impl Frame {
    pub fn from_snapshot(s: &Snapshot, t0_us: u64) -> Frame {
        Frame {
            t_us: s.now_us.saturating_sub(t0_us),
            aggr: s.aggregation,
            targets: s
                .targets
                .iter()
                .map(|t| FrameTarget {
                    mappings: Vec::new(),
                    absent: Vec::new(),
                    id: t.target.0,
                    regions: t
                        .regions
                        .iter()
                        .map(|r| [r.start(), r.end(), r.nr_accesses as u64, r.age as u64])
                        .collect(),
                    seen: t.regions.iter().map(|r| r.nr_seen).collect(),
                })
                .collect(),
            cgroups: Vec::new(),
        }
    }
}

/// Fill each target's `mappings` from `/proc/PID/maps` under `root` (live records). A
/// target whose maps cannot be read (it exited) keeps none.
pub fn add_mappings(f: &mut Frame, root: &engine::SysRoot) {
    for t in &mut f.targets {
        let Ok(vmas) = engine::kernel::maps::read_maps(&root.pid_file(t.id, "maps")) else {
            continue;
        };
        let mut out: Vec<[u64; 2]> = Vec::with_capacity(vmas.len());
        for v in vmas.iter().filter(|v| !v.is_gate()) {
            match out.last_mut() {
                Some(last) if last[1] == v.range.start => last[1] = v.range.end,
                _ => out.push([v.range.start, v.range.end]),
            }
        }
        t.mappings = out;
    }
}

/// At most this much of a target's address space is read for `absent` (the actuator's
/// residency-scan bound, `ActuatorConfig::resident_scan_max`).
const ABSENT_SCAN_MAX: u64 = 8 << 30;

/// Fill `absent` of each target of `f` not in `seen` (then added to it) from its pagemap
/// over its `mappings` (call after [`add_mappings`]). A target whose pagemap cannot be read
/// keeps none.
pub fn add_absent(f: &mut Frame, root: &engine::SysRoot, seen: &mut Vec<u32>) {
    use engine::kernel::pagemap::{Pagemap, Residency};
    let page = engine::kernel::host::page_size();
    for t in &mut f.targets {
        if seen.contains(&t.id) {
            continue;
        }
        seen.push(t.id);
        let Ok(mut pm) = Pagemap::open(&root.pid_file(t.id, "pagemap"), page) else {
            continue;
        };
        let mut left = ABSENT_SCAN_MAX;
        let mut entries = Vec::new();
        let mut out: Vec<[u64; 2]> = Vec::new();
        'maps: for m in &t.mappings {
            let mut a = m[0];
            while a < m[1] && left > 0 {
                let n = ((m[1] - a) / page).min(1 << 16).min(left / page) as usize;
                if n == 0 || pm.read(a, n, &mut entries).is_err() || entries.is_empty() {
                    break 'maps;
                }
                for (i, e) in entries.iter().enumerate() {
                    if matches!(e.residency(), Residency::Present | Residency::Special) {
                        continue;
                    }
                    let p = a + i as u64 * page;
                    match out.last_mut() {
                        Some(last) if last[1] == p => last[1] = p + page,
                        _ => out.push([p, p + page]),
                    }
                }
                a += entries.len() as u64 * page;
                left = left.saturating_sub(entries.len() as u64 * page);
            }
        }
        t.absent = out;
    }
}

/// Writes a record file line by line.
pub struct RecordWriter {
    path: PathBuf,
    out: BufWriter<File>,
    snapshots: u64,
    last_t_us: u64,
}

impl RecordWriter {
    pub fn create(path: &Path, header: &Header) -> Result<Self> {
        let f = File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
        let mut w = Self {
            path: path.to_owned(),
            out: BufWriter::new(f),
            snapshots: 0,
            last_t_us: 0,
        };
        w.line(&serde_json::to_string(header)?)?;
        Ok(w)
    }

    fn line(&mut self, s: &str) -> Result<()> {
        writeln!(self.out, "{s}")
            .and_then(|_| self.out.flush())
            .with_context(|| format!("{}: write failed", self.path.display()))
    }

    pub fn write_frame(&mut self, f: &Frame) -> Result<()> {
        self.snapshots += 1;
        self.last_t_us = f.t_us;
        self.line(&serde_json::to_string(f)?)
    }

    pub fn snapshots(&self) -> u64 {
        self.snapshots
    }

    pub fn finish(mut self, reason: &str) -> Result<()> {
        let end = serde_json::json!({"end": End { snapshots: self.snapshots, t_us: self.last_t_us, reason: reason.into() }});
        self.line(&end.to_string())
    }
}

/// One bad line: where and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    /// Byte offset of the start of the bad line in the file.
    pub offset: u64,
    /// Intact snapshots read before it (what a replay that stops here has used).
    pub frames_before: usize,
    pub msg: String,
}

/// A record file as read: everything intact, and the problems met.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub header: Header,
    pub frames: Vec<Frame>,
    pub end: Option<End>,
    pub problems: Vec<Problem>,
}

impl Loaded {
    /// A bad line: at `line:column`, starting at byte `offset`, after the frames read so far.
    fn bad(&mut self, line: usize, column: usize, offset: u64, msg: String) {
        self.problems.push(Problem {
            line,
            column,
            offset,
            frames_before: self.frames.len(),
            msg,
        });
    }

    pub fn max_nr_accesses(&self) -> u32 {
        self.header.attrs.max_nr_accesses()
    }

    /// Target ids in order of first appearance.
    pub fn target_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = Vec::new();
        for f in &self.frames {
            for t in &f.targets {
                if !ids.contains(&t.id) {
                    ids.push(t.id);
                }
            }
        }
        ids
    }

    /// The first problem as `path:line:column: message (…)`, if any.
    pub fn problem_line(&self) -> Option<String> {
        let p = self.problems.first()?;
        let more = if self.problems.len() > 1 {
            format!("; {} more bad lines", self.problems.len() - 1)
        } else {
            String::new()
        };
        Some(format!(
            "{}:{}:{}: {}{more} (byte offset {}; used the {} intact snapshots)",
            self.path.display(),
            p.line,
            p.column,
            p.msg,
            p.offset,
            self.frames.len()
        ))
    }
}

/// The longest line a reader holds: 256 MiB (a snapshot line is ~40 bytes a region, so
/// 100 targets of 10 000 regions each write ~40 MB). A longer line is read through to its
/// end without being kept, and named as a bad line: a damaged or hostile file cannot make
/// the reader allocate more than this.
pub const MAX_LINE_BYTES: usize = 256 << 20;

/// A line of a record: its bytes, or only its length when it is over the bound (with its
/// `\n`: a line cut off by the end of the file reads one byte shorter than it is).
enum Line {
    Kept(Vec<u8>),
    TooLong(u64),
}

/// The `\n`-separated lines of `r` (as `BufRead::split`: no empty last line after a final
/// `\n`), each held only up to `max` bytes.
struct Lines<R> {
    r: R,
    max: usize,
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = std::io::Result<Line>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut buf = Vec::new();
        // One byte over the bound is enough to know a line is over it.
        match std::io::Read::take(&mut self.r, self.max as u64 + 1).read_until(b'\n', &mut buf) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => return Some(Err(e)),
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        } else if buf.len() > self.max {
            // The rest of the line, read through and dropped (its `\n` counted, not kept).
            let rest = self.r.skip_until(b'\n');
            return Some(rest.map(|n| Line::TooLong(self.max as u64 + n as u64)));
        }
        Some(Ok(Line::Kept(buf)))
    }
}

/// Read a record file. Errors only when nothing usable is there (missing file, bad header);
/// bad snapshot lines are skipped and listed in `problems`.
pub fn read(path: &Path) -> Result<Loaded> {
    let f =
        File::open(path).with_context(|| format!("{}: cannot open record file", path.display()))?;
    read_from(path, BufReader::new(f))
}

/// [`read`] over any reader (`path` only names it in messages).
pub fn read_from(path: &Path, r: impl BufRead) -> Result<Loaded> {
    read_bounded(path, r, MAX_LINE_BYTES)
}

fn read_bounded(path: &Path, r: impl BufRead, max_line: usize) -> Result<Loaded> {
    let mut lines = Lines { r, max: max_line };
    let p = path.display();
    let first = match lines.next() {
        None => {
            return Err(crate::exit::err(
                crate::exit::Code::Failure,
                format!("{p}: empty file, not a madvd record"),
            ))
        }
        Some(l) => match l.with_context(|| format!("{p}: read failed"))? {
            Line::Kept(l) => l,
            Line::TooLong(n) => {
                return Err(crate::exit::err(
                    crate::exit::Code::Failure,
                    format!("{p}:1:1: header line of {n} bytes or more, over the {max_line}-byte bound (not a madvd record?)"),
                ))
            }
        },
    };
    let header: Header = serde_json::from_slice(&first).map_err(|e| {
        let hint = if first.starts_with(b"{") {
            ""
        } else {
            " (not a madvd record file?)"
        };
        crate::exit::err(
            crate::exit::Code::Failure,
            format!("{p}:1:{}: bad header: {e}{hint}", e.column()),
        )
    })?;
    if header.format != FORMAT {
        return Err(crate::exit::err(
            crate::exit::Code::Failure,
            format!(
                "{p}:1:1: format is '{}', expected '{FORMAT}'",
                header.format
            ),
        ));
    }
    if header.version > VERSION {
        return Err(crate::exit::err(
            crate::exit::Code::Failure,
            format!(
                "{p}:1:1: record format version {} is newer than this madvd reads ({VERSION})",
                header.version
            ),
        ));
    }
    header.attrs.validate().map_err(|e| {
        crate::exit::err(
            crate::exit::Code::Failure,
            format!("{p}:1:1: bad attrs: {e}"),
        )
    })?;
    let max = header.attrs.max_nr_accesses() as u64;
    let mut out = Loaded {
        path: path.to_owned(),
        header,
        frames: Vec::new(),
        end: None,
        problems: Vec::new(),
    };
    let mut lineno = 1;
    // Byte offsets: of the line being read, and of the one after it.
    let mut next_off = first.len() as u64 + 1;
    let mut line_off;
    for l in lines {
        lineno += 1;
        line_off = next_off;
        let l = match l {
            Ok(Line::Kept(l)) => l,
            Ok(Line::TooLong(n)) => {
                next_off = line_off + n + 1;
                out.bad(
                    lineno,
                    1,
                    line_off,
                    format!("line of {n} bytes or more, over the {max_line}-byte bound: skipped"),
                );
                continue;
            }
            Err(e) => {
                out.bad(lineno, 1, line_off, format!("read failed: {e}"));
                break;
            }
        };
        next_off = line_off + l.len() as u64 + 1;
        if l.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if out.end.is_some() {
            out.bad(lineno, 1, line_off, "data after the end line".into());
            continue;
        }
        if l.starts_with(b"{\"end\"") {
            match serde_json::from_slice::<EndLine>(&l) {
                Ok(e) => out.end = Some(e.end),
                Err(e) => out.bad(lineno, e.column(), line_off, format!("bad end line: {e}")),
            }
            continue;
        }
        match serde_json::from_slice::<Frame>(&l) {
            Ok(f) => match check_frame(&f, max, out.frames.last()) {
                Ok(()) => out.frames.push(f),
                Err(msg) => out.bad(lineno, 1, line_off, msg),
            },
            Err(e) => {
                let msg = if e.is_eof() {
                    format!("truncated line ({e})")
                } else {
                    format!("bad snapshot: {e}")
                };
                out.bad(lineno, e.column().max(1), line_off, msg);
            }
        }
    }
    let said = out.end.as_ref().map(|e| e.snapshots);
    if let Some(said) = said.filter(|&n| n != out.frames.len() as u64) {
        if out.problems.is_empty() {
            let msg = format!("end line says {said} snapshots, found {}", out.frames.len());
            out.bad(lineno, 1, next_off, msg);
        }
    }
    Ok(out)
}

fn check_frame(f: &Frame, max: u64, prev: Option<&Frame>) -> std::result::Result<(), String> {
    if let Some(p) = prev {
        if f.t_us < p.t_us {
            return Err(format!(
                "time goes backwards ({} us after {} us)",
                f.t_us, p.t_us
            ));
        }
    }
    for t in &f.targets {
        if !t.seen.is_empty() && t.seen.len() != t.regions.len() {
            return Err(format!(
                "target {}: {} `seen` counts for {} regions",
                t.id,
                t.seen.len(),
                t.regions.len()
            ));
        }
        let mut last_end = 0;
        for (i, r) in t.regions.iter().enumerate() {
            let [s, e, n, _] = *r;
            if e <= s {
                return Err(format!(
                    "target {}: region {i} [{s:#x}, {e:#x}) is empty or reversed",
                    t.id
                ));
            }
            if s < last_end {
                return Err(format!("target {}: region {i} starts at {s:#x}, before the previous region's end {last_end:#x}", t.id));
            }
            if n > max {
                return Err(format!(
                    "target {}: region {i} has nr_accesses {n} > max {max}",
                    t.id
                ));
            }
            last_end = e;
        }
    }
    Ok(())
}

/// Bytes of `t` in regions accessed at all in the aggregation (`nr_accesses > 0`): the
/// working-set size, as `damo report wss` counts it by default.
pub fn wss(t: &FrameTarget) -> u64 {
    t.regions
        .iter()
        .filter(|r| r[2] > 0)
        .map(|r| r[1] - r[0])
        .sum()
}

pub fn total(t: &FrameTarget) -> u64 {
    t.regions.iter().map(|r| r[1] - r[0]).sum()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn header() -> Header {
        Header {
            format: FORMAT.into(),
            version: VERSION,
            source: Source::Sim {
                scenario: "stairs".into(),
                size: 1 << 30,
            },
            ops: "sim".into(),
            attrs: Attrs::default(),
            started_unix_ms: 0,
            kernel: None,
        }
    }

    /// A synthetic stairs recording: `n` frames over `size` bytes in 3 spans, a hot window
    /// 1/8 of the first span moving up each `n/8` frames.
    pub fn stairs(n: usize) -> (Header, Vec<Frame>) {
        let base = 0x7f00_0000_0000u64;
        let size = 64u64 << 20;
        let step = size / 64;
        let frames = (0..n)
            .map(|i| {
                let hot_lo = (i * 8 / n) as u64 * size / 8;
                let mut regions = Vec::new();
                for k in 0..64u64 {
                    let s = k * step;
                    let hot = s >= hot_lo && s < hot_lo + size / 8;
                    regions.push([
                        base + s,
                        base + s + step,
                        if hot { 18 } else { 0 },
                        if hot { 1 } else { i as u64 },
                    ]);
                }
                // A second span (a heap far below) and a small stack far above.
                regions.insert(0, [0x5555_0000_0000, 0x5555_0010_0000, 2, 3]);
                regions.push([0x7ffc_0000_0000, 0x7ffc_0002_1000, 20, 9]);
                // Every answer known (a simulator): the evidence is the count.
                let seen = regions.iter().map(|r| r[2] as u32).collect();
                Frame {
                    t_us: i as u64 * 100_000,
                    aggr: i as u64,
                    targets: vec![FrameTarget {
                        id: 42,
                        regions,
                        mappings: Vec::new(),
                        absent: Vec::new(),
                        seen,
                    }],
                    cgroups: Vec::new(),
                }
            })
            .collect();
        (header(), frames)
    }

    pub fn write_lines(h: &Header, frames: &[Frame], end: bool) -> String {
        let mut s = serde_json::to_string(h).unwrap() + "\n";
        for f in frames {
            s += &(serde_json::to_string(f).unwrap() + "\n");
        }
        if end {
            s += &(serde_json::json!({"end": End { snapshots: frames.len() as u64, t_us: frames.last().map_or(0, |f| f.t_us), reason: "duration".into() }}).to_string() + "\n");
        }
        s
    }

    #[test]
    fn round_trip_through_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.rec");
        let (h, frames) = stairs(16);
        let mut w = RecordWriter::create(&path, &h).unwrap();
        for f in &frames {
            w.write_frame(f).unwrap();
        }
        w.finish("duration").unwrap();
        let l = read(&path).unwrap();
        assert_eq!(l.header, h);
        assert_eq!(l.frames, frames);
        assert_eq!(l.end.as_ref().unwrap().snapshots, 16);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
    }

    #[test]
    fn truncated_file_keeps_complete_lines_and_names_the_line() {
        let (h, frames) = stairs(10);
        let s = write_lines(&h, &frames, false);
        let cut = &s[..s.len() - 40];
        let l = read_from(Path::new("x.rec"), cut.as_bytes()).unwrap();
        assert_eq!(l.frames.len(), 9);
        assert_eq!(l.problems.len(), 1);
        assert_eq!(l.problems[0].line, 11);
        // Line 11 starts after the header and nine frames.
        let whole_lines: usize = s.lines().take(10).map(|l| l.len() + 1).sum();
        assert_eq!(l.problems[0].offset, whole_lines as u64);
        assert_eq!(l.problems[0].frames_before, 9);
        let msg = l.problem_line().unwrap();
        assert!(msg.starts_with("x.rec:11:"), "{msg}");
        assert!(msg.contains("truncated"), "{msg}");
        assert!(msg.contains(&format!("byte offset {whole_lines}")), "{msg}");
    }

    #[test]
    fn corrupt_line_in_the_middle_is_skipped_and_named() {
        let (h, frames) = stairs(5);
        let s = write_lines(&h, &frames, true);
        let mut lines: Vec<String> = s.lines().map(String::from).collect();
        lines[3] = lines[3].replace("\"aggr\"", "\"agr\"");
        let l = read_from(Path::new("x.rec"), lines.join("\n").as_bytes()).unwrap();
        assert_eq!(l.frames.len(), 4);
        assert_eq!(l.problems[0].line, 4);
        assert!(l.problems[0].msg.contains("agr"), "{:?}", l.problems);
    }

    #[test]
    fn bad_header_and_empty_file_are_errors() {
        let e = read_from(Path::new("x.rec"), &b""[..]).unwrap_err();
        assert!(format!("{e:#}").contains("x.rec: empty file"), "{e:#}");
        let e = read_from(Path::new("x.rec"), &b"hello\n"[..]).unwrap_err();
        assert!(format!("{e:#}").starts_with("x.rec:1:"), "{e:#}");
        let mut h = header();
        h.version = 99;
        let e = read_from(
            Path::new("x.rec"),
            serde_json::to_string(&h).unwrap().as_bytes(),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("newer"), "{e:#}");
    }

    #[test]
    fn invalid_regions_are_refused() {
        // The second frame damaged by `damage` is skipped, named by a message with `want`.
        let refused = |damage: fn(&mut FrameTarget), want: &str| {
            let (h, mut frames) = stairs(2);
            damage(&mut frames[1].targets[0]);
            let s = write_lines(&h, &frames, false);
            let l = read_from(Path::new("x.rec"), s.as_bytes()).unwrap();
            assert_eq!(l.frames.len(), 1);
            assert!(l.problems[0].msg.contains(want), "{:?}", l.problems);
        };
        refused(|t| t.regions[3][2] = 999, "nr_accesses 999");
        // `seen` must match the regions one for one.
        refused(
            |t| {
                t.seen.pop();
            },
            "`seen` counts for",
        );
    }

    /// A line over the bound is read through, not kept, and named; the lines after it read.
    /// Lines split as `BufRead::split` splits them.
    #[test]
    fn an_over_long_line_is_named_and_skipped() {
        let (h, frames) = stairs(4);
        let s = write_lines(&h, &frames, true);
        let mut lines: Vec<String> = s.lines().map(String::from).collect();
        let max = lines.iter().map(String::len).max().unwrap();
        lines[2] = "x".repeat(max + 5000);
        let text = lines.join("\n") + "\n";
        let l = read_bounded(Path::new("x.rec"), text.as_bytes(), max).unwrap();
        assert_eq!(l.frames.len(), 3);
        assert_eq!(l.problems.len(), 1, "{:?}", l.problems);
        assert_eq!(l.problems[0].line, 3);
        assert!(l.problems[0].msg.contains("over the"), "{:?}", l.problems);
        let off: usize = lines.iter().take(2).map(|l| l.len() + 1).sum();
        assert_eq!(l.problems[0].offset, off as u64);
        // The header over the bound is an error naming line 1.
        let e = read_bounded(Path::new("x.rec"), text.as_bytes(), 10).unwrap_err();
        assert!(
            format!("{e:#}").starts_with("x.rec:1:1: header line"),
            "{e:#}"
        );
        // Splitting: as `split(b'\n')`, through a reader that gives a byte at a time.
        for t in ["", "a", "a\n", "a\nb", "a\n\nb\n", "\n"] {
            let want: Vec<Vec<u8>> = t
                .as_bytes()
                .split(|&b| b == b'\n')
                .map(<[u8]>::to_vec)
                .collect();
            let want = if t.ends_with('\n') || t.is_empty() {
                &want[..want.len() - 1]
            } else {
                &want[..]
            };
            let r = std::io::BufReader::with_capacity(1, t.as_bytes());
            let got: Vec<Vec<u8>> = Lines { r, max: 100 }
                .map(|l| match l.unwrap() {
                    Line::Kept(b) => b,
                    Line::TooLong(_) => panic!(),
                })
                .collect();
            assert_eq!(got, want, "{t:?}");
        }
    }

    /// A version-2 record (no `seen`) reads as before, and its regions count as seen
    /// accessed by their count.
    #[test]
    fn version_2_records_read_without_evidence() {
        let (mut h, mut frames) = stairs(3);
        h.version = 2;
        for f in &mut frames {
            f.targets[0].seen.clear();
        }
        let s = write_lines(&h, &frames, true);
        assert!(!s.contains("seen"));
        let l = read_from(Path::new("x.rec"), s.as_bytes()).unwrap();
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let t = &l.frames[2].targets[0];
        for (i, r) in t.regions.iter().enumerate() {
            assert_eq!(t.seen_accessed(i), r[2] > 0);
        }
    }
}
