//! A real-memory workload with ground truth, run as a child process (`madvd workload ...`)
//! by tests, benches and the demo.
//!
//! The child maps its memory itself (private anonymous, `MADV_NOHUGEPAGE` by default) and
//! first-touches every page itself, so no page is shared with its parent (PAGEOUT skips
//! shared pages). Every page holds content derived from (page index, generation), so the
//! whole mapping can be verified after any amount of paging out and in. One thread runs the
//! access loop over the current hot range; another answers commands on stdin:
//!
//! | command | answer (one JSON line on stdout) |
//! |---|---|
//! | `mark` | starts a ground-truth window: clears the touched-page bitmap and the op counter |
//! | `truth` | `touched_bytes`, `untouched_bytes`, `ops`, `elapsed_ms`, `ops_per_sec`, `hot` since `mark` |
//! | `verify` | pauses the loop, checks every mapped page, resumes: `pages`, `bad_pages` |
//! | `pause` / `resume` | stops / restarts the access loop |
//! | `unmap OFF LEN` | munmaps `[base+OFF, base+OFF+LEN)` (page aligned, outside the hot set) |
//! | `quit` | exits |
//!
//! The first line is `{"event":"ready",...}` with the pid, the mappings and the hot range.

use crate::region::AddrRange;
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PAGE: u64 = 4096;

/// Where the hot set is over time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pattern {
    /// A fixed hot range.
    HotCold,
    /// The hot range jumps by its own size every `period_ms` (wrapping around).
    Moving { period_ms: u64 },
    /// A growing working set: at step k (of `steps`, each `step_ms` long) the hot set is the
    /// first (k+1)/steps of the mapping; then it starts over.
    Stairs { steps: u32, step_ms: u64 },
}

/// Page contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fill {
    /// Compressible (a hash header, then a repeating 16-byte motif): zram stores it small.
    Pattern,
    /// Incompressible pseudo-random words: zram saves little.
    Random,
}

/// What the child does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Bytes, rounded up to pages.
    pub size: u64,
    pub hot_fraction: f64,
    /// Start of the hot range as a fraction of `size`.
    pub hot_offset: f64,
    pub pattern: Pattern,
    pub fill: Fill,
    /// Share of accesses that rewrite the page with its next generation.
    pub write_fraction: f64,
    pub nohugepage: bool,
    /// Hot and cold sets in two separate mappings (VMA-granular checks can tell them apart).
    pub two_mappings: bool,
    /// Cap on page accesses per second (None: as fast as one thread goes).
    pub rate_limit: Option<u64>,
    pub seed: u64,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        Self {
            size: 256 << 20,
            hot_fraction: 0.10,
            hot_offset: 0.0,
            pattern: Pattern::HotCold,
            fill: Fill::Pattern,
            write_fraction: 0.0,
            nohugepage: true,
            two_mappings: false,
            rate_limit: None,
            seed: 1,
        }
    }
}

impl WorkloadSpec {
    /// The spec as one command-line argument (`madvd workload --spec JSON`).
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--spec".into(),
            serde_json::to_string(self).expect("spec serializes"),
        ]
    }
    pub fn from_json(s: &str) -> Result<Self, String> {
        let spec: WorkloadSpec =
            serde_json::from_str(s).map_err(|e| format!("workload spec: {e}"))?;
        spec.validate()?;
        Ok(spec)
    }
    pub fn validate(&self) -> Result<(), String> {
        if self.size < 16 * PAGE {
            return Err(format!("workload size {} is below 16 pages", self.size));
        }
        if !(self.hot_fraction > 0.0 && self.hot_fraction <= 1.0) {
            return Err(format!(
                "hot_fraction {} is not in (0, 1]",
                self.hot_fraction
            ));
        }
        if !(0.0..1.0).contains(&self.hot_offset) {
            return Err(format!("hot_offset {} is not in [0, 1)", self.hot_offset));
        }
        if !(0.0..=1.0).contains(&self.write_fraction) {
            return Err(format!(
                "write_fraction {} is not in [0, 1]",
                self.write_fraction
            ));
        }
        Ok(())
    }
}

/// Messages the child prints, one JSON object per line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Ready {
        pid: u32,
        mappings: Vec<AddrRange>,
        hot: AddrRange,
        page_size: u64,
    },
    Marked,
    Truth(Truth),
    Verify(Verify),
    Paused,
    Resumed,
    Unmapped {
        range: AddrRange,
    },
    Error {
        message: String,
    },
}

/// Ground truth since the last `mark`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    pub touched_bytes: u64,
    pub untouched_bytes: u64,
    pub ops: u64,
    pub elapsed_ms: u64,
    pub ops_per_sec: f64,
    /// The hot range now.
    pub hot: AddrRange,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verify {
    pub pages: u64,
    pub bad_pages: u64,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Content of word `j` of page `page` at generation `gen`.
fn word(fill: Fill, seed: u64, page: u64, gen: u32, j: usize) -> u64 {
    let h = splitmix(seed ^ (page << 20) ^ ((gen as u64) << 52));
    match fill {
        Fill::Random => splitmix(h ^ j as u64),
        Fill::Pattern => {
            if j == 0 {
                h
            } else {
                // A 16-byte motif repeated: compresses well but is not a same-filled page.
                (h >> (j % 2 * 32)) & 0xffff_ffff
            }
        }
    }
}

/// The child's memory: one or two mappings viewed as one page array.
struct Memory {
    /// (base address, pages) of each mapping, in page-index order.
    maps: Vec<(u64, u64)>,
    pages: u64,
}

impl Memory {
    fn map(spec: &WorkloadSpec) -> io::Result<Self> {
        let pages = spec.size.div_ceil(PAGE);
        let sizes: Vec<u64> = if spec.two_mappings {
            let hot = ((pages as f64 * spec.hot_fraction).ceil() as u64).clamp(1, pages - 1);
            vec![hot, pages - hot]
        } else {
            vec![pages]
        };
        // One reservation with a PROT_NONE guard page between the mappings keeps them
        // separate VMAs (the kernel would merge adjacent anonymous mappings).
        let total = sizes.iter().sum::<u64>() + sizes.len() as u64 - 1;
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                (total * PAGE) as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut maps = Vec::new();
        let mut at = base as u64;
        for (i, &n) in sizes.iter().enumerate() {
            maps.push((at, n));
            at += n * PAGE;
            if i + 1 < sizes.len() {
                // SAFETY: the guard page lies inside the mapping made above.
                if unsafe {
                    libc::mprotect(at as *mut libc::c_void, PAGE as usize, libc::PROT_NONE)
                } != 0
                {
                    return Err(io::Error::last_os_error());
                }
                at += PAGE;
            }
        }
        for &(b, n) in &maps {
            let advice = if spec.nohugepage {
                libc::MADV_NOHUGEPAGE
            } else {
                libc::MADV_HUGEPAGE
            };
            // SAFETY: advising our own mapping; neither advice changes its contents.
            unsafe { libc::madvise(b as *mut libc::c_void, (n * PAGE) as usize, advice) };
        }
        Ok(Self { maps, pages })
    }

    fn addr(&self, page: u64) -> u64 {
        let mut p = page;
        for &(b, n) in &self.maps {
            if p < n {
                return b + p * PAGE;
            }
            p -= n;
        }
        unreachable!("page {page} beyond {} pages", self.pages)
    }

    fn ranges(&self) -> Vec<AddrRange> {
        self.maps
            .iter()
            .map(|&(b, n)| AddrRange::new(b, b + n * PAGE))
            .collect()
    }

    fn write_page(&self, spec: &WorkloadSpec, page: u64, gen: u32) {
        let p = self.addr(page) as *mut u64;
        for j in 0..(PAGE as usize / 8) {
            // SAFETY: `p` points at a mapped, writable page of ours (never unmapped while
            // the loop may touch it: unmap is refused inside the hot set and the loop is
            // paused around it); j < 512 stays inside the page.
            unsafe {
                p.add(j)
                    .write_volatile(word(spec.fill, spec.seed, page, gen, j))
            };
        }
    }

    fn check_page(&self, spec: &WorkloadSpec, page: u64, gen: u32) -> bool {
        let p = self.addr(page) as *const u64;
        // SAFETY: as in write_page; reads only.
        (0..(PAGE as usize / 8)).all(
            |j| unsafe { p.add(j).read_volatile() } == word(spec.fill, spec.seed, page, gen, j),
        )
    }
}

/// Shared between the access loop and the control thread.
struct State {
    spec: WorkloadSpec,
    mem: Memory,
    /// Generation of each page (what it must contain); u32::MAX = unmapped.
    gens: Vec<AtomicU64>,
    touched: Vec<AtomicU64>,
    ops: AtomicU64,
    paused: AtomicBool,
    in_loop: Mutex<()>,
    quit: AtomicBool,
    start: Instant,
    mark: Mutex<Instant>,
}

const UNMAPPED: u64 = u64::MAX;

impl State {
    /// Hot page range `[first, last)` at `t` since start.
    fn hot_pages(&self, t: Duration) -> (u64, u64) {
        hot_pages(&self.spec, self.mem.pages, t)
    }
}

/// Hot page range `[first, last)` of a workload of `pages` pages at time `t`.
pub fn hot_pages(spec: &WorkloadSpec, pages: u64, t: Duration) -> (u64, u64) {
    let hot = ((pages as f64 * spec.hot_fraction).round() as u64).clamp(1, pages);
    let base = ((pages as f64 * spec.hot_offset) as u64).min(pages - hot);
    if spec.two_mappings {
        return (0, hot);
    }
    match spec.pattern {
        Pattern::HotCold => (base, base + hot),
        Pattern::Moving { period_ms } => {
            let k = t.as_millis() as u64 / period_ms.max(1);
            let slots = (pages / hot).max(1);
            let start = (base / hot + k) % slots * hot;
            (start, (start + hot).min(pages))
        }
        Pattern::Stairs { steps, step_ms } => {
            let steps = steps.max(1) as u64;
            let k = t.as_millis() as u64 / step_ms.max(1) % steps;
            (0, (pages * (k + 1) / steps).max(1))
        }
    }
}

fn emit(out: &Mutex<Box<dyn Write + Send>>, ev: &Event) {
    let mut o = out.lock().expect("stdout lock");
    // A parent that went away is not our problem: the child exits on stdin EOF.
    let _ = writeln!(
        o,
        "{}",
        serde_json::to_string(ev).expect("event serializes")
    );
    let _ = o.flush();
}

/// Run the workload child: map, first-touch, loop, answer commands until `quit` or EOF.
pub fn run_child(
    spec: &WorkloadSpec,
    control: impl BufRead,
    out: impl Write + Send + 'static,
) -> io::Result<()> {
    spec.validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mem = Memory::map(spec)?;
    let pages = mem.pages;
    let st = Arc::new(State {
        spec: spec.clone(),
        gens: (0..pages).map(|_| AtomicU64::new(0)).collect(),
        touched: (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        mem,
        ops: AtomicU64::new(0),
        paused: AtomicBool::new(false),
        in_loop: Mutex::new(()),
        quit: AtomicBool::new(false),
        start: Instant::now(),
        mark: Mutex::new(Instant::now()),
    });
    for p in 0..pages {
        st.mem.write_page(spec, p, 0);
    }
    let out: Arc<Mutex<Box<dyn Write + Send>>> = Arc::new(Mutex::new(Box::new(out)));
    let (h0, h1) = st.hot_pages(Duration::ZERO);
    emit(
        &out,
        &Event::Ready {
            pid: std::process::id(),
            mappings: st.mem.ranges(),
            hot: AddrRange::new(st.mem.addr(h0), st.mem.addr(h1 - 1) + PAGE),
            page_size: PAGE,
        },
    );

    let looper = {
        let st = Arc::clone(&st);
        std::thread::spawn(move || access_loop(&st))
    };
    for line in control.lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        let ev = match words.next() {
            Some("mark") => {
                for w in &st.touched {
                    w.store(0, Ordering::Relaxed);
                }
                st.ops.store(0, Ordering::Relaxed);
                *st.mark.lock().expect("mark lock") = Instant::now();
                Event::Marked
            }
            Some("truth") => Event::Truth(truth(&st)),
            Some("verify") => {
                let _g = pause(&st);
                Event::Verify(verify(&st))
            }
            Some("pause") => {
                st.paused.store(true, Ordering::SeqCst);
                drop(st.in_loop.lock().expect("loop lock"));
                Event::Paused
            }
            Some("resume") => {
                st.paused.store(false, Ordering::SeqCst);
                Event::Resumed
            }
            Some("unmap") => {
                let nums: Vec<u64> = words.filter_map(|w| w.parse().ok()).collect();
                match nums.as_slice() {
                    [off, len] => unmap(&st, *off, *len),
                    _ => Event::Error {
                        message: "usage: unmap OFFSET LEN".into(),
                    },
                }
            }
            Some("quit") => break,
            Some(other) => Event::Error {
                message: format!("unknown command `{other}`"),
            },
            None => continue,
        };
        emit(&out, &ev);
    }
    st.quit.store(true, Ordering::SeqCst);
    st.paused.store(false, Ordering::SeqCst);
    let _ = looper.join();
    Ok(())
}

/// Pause the loop until the guard drops.
fn pause(st: &State) -> impl Drop + '_ {
    struct Resume<'a>(&'a State, bool);
    impl Drop for Resume<'_> {
        fn drop(&mut self) {
            self.0.paused.store(self.1, Ordering::SeqCst);
        }
    }
    let was = st.paused.swap(true, Ordering::SeqCst);
    // The loop holds `in_loop` while it touches memory: taking it waits for the batch to end.
    drop(st.in_loop.lock().expect("loop lock"));
    Resume(st, was)
}

fn truth(st: &State) -> Truth {
    let touched_pages: u64 = st
        .touched
        .iter()
        .map(|w| w.load(Ordering::Relaxed).count_ones() as u64)
        .sum();
    let mapped = st
        .gens
        .iter()
        .filter(|g| g.load(Ordering::Relaxed) != UNMAPPED)
        .count() as u64;
    let elapsed = st.mark.lock().expect("mark lock").elapsed();
    let ops = st.ops.load(Ordering::Relaxed);
    let (h0, h1) = st.hot_pages(st.start.elapsed());
    Truth {
        touched_bytes: touched_pages * PAGE,
        untouched_bytes: mapped.saturating_sub(touched_pages) * PAGE,
        ops,
        elapsed_ms: elapsed.as_millis() as u64,
        ops_per_sec: ops as f64 / elapsed.as_secs_f64().max(1e-9),
        hot: AddrRange::new(st.mem.addr(h0), st.mem.addr(h1 - 1) + PAGE),
    }
}

fn verify(st: &State) -> Verify {
    let mut v = Verify {
        pages: 0,
        bad_pages: 0,
    };
    for p in 0..st.mem.pages {
        let g = st.gens[p as usize].load(Ordering::Relaxed);
        if g == UNMAPPED {
            continue;
        }
        v.pages += 1;
        if !st.mem.check_page(&st.spec, p, g as u32) {
            v.bad_pages += 1;
        }
    }
    v
}

fn unmap(st: &State, off: u64, len: u64) -> Event {
    if off % PAGE != 0 || len % PAGE != 0 || len == 0 || st.spec.two_mappings {
        return Event::Error {
            message: "unmap needs page-aligned OFFSET and LEN (one-mapping workloads)".into(),
        };
    }
    let (first, last) = (off / PAGE, (off + len) / PAGE);
    let (h0, h1) = st.hot_pages(st.start.elapsed());
    if last > st.mem.pages
        || (first < h1 && h0 < last)
        || !matches!(st.spec.pattern, Pattern::HotCold)
    {
        return Event::Error {
            message: "unmap range must lie inside the mapping, outside the (fixed) hot set".into(),
        };
    }
    let _g = pause(st);
    let start = st.mem.addr(first);
    // SAFETY: the range lies inside our own mapping, outside the hot set the loop touches,
    // and the loop is paused; the pages are marked unmapped so nothing reads them again.
    if unsafe { libc::munmap(start as *mut libc::c_void, len as usize) } != 0 {
        return Event::Error {
            message: format!("munmap: {}", io::Error::last_os_error()),
        };
    }
    for p in first..last {
        st.gens[p as usize].store(UNMAPPED, Ordering::Relaxed);
    }
    Event::Unmapped {
        range: AddrRange::new(start, start + len),
    }
}

fn access_loop(st: &State) {
    let mut rng = st.spec.seed ^ 0x5851_f42d_4c95_7f2d;
    let write_thres = (st.spec.write_fraction * u32::MAX as f64) as u64;
    const BATCH: u64 = 256;
    let mut batches = 0u64;
    let mut last_pace = Instant::now();
    let mut since_pace = 0u64;
    while !st.quit.load(Ordering::Relaxed) {
        if st.paused.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let guard = st.in_loop.lock().expect("loop lock");
        if st.paused.load(Ordering::SeqCst) {
            continue;
        }
        let (h0, h1) = st.hot_pages(st.start.elapsed());
        let span = h1 - h0;
        for _ in 0..BATCH {
            rng = splitmix(rng);
            let page = h0 + rng % span;
            let g = st.gens[page as usize].load(Ordering::Relaxed);
            if g == UNMAPPED {
                continue;
            }
            if (rng >> 32) < write_thres {
                st.mem.write_page(&st.spec, page, g as u32 + 1);
                st.gens[page as usize].store(g + 1, Ordering::Relaxed);
            } else {
                let p = st.mem.addr(page) as *const u64;
                // SAFETY: a mapped page of ours (checked not unmapped above, and unmap
                // waits for `in_loop`); reading its first word.
                std::hint::black_box(unsafe { p.add((rng >> 40) as usize % 512).read_volatile() });
            }
            st.touched[(page / 64) as usize].fetch_or(1 << (page % 64), Ordering::Relaxed);
        }
        drop(guard);
        st.ops.fetch_add(BATCH, Ordering::Relaxed);
        batches += 1;
        if let Some(limit) = st.spec.rate_limit {
            since_pace += BATCH;
            let due = Duration::from_secs_f64(since_pace as f64 / limit.max(1) as f64);
            let spent = last_pace.elapsed();
            if due > spent {
                std::thread::sleep(due - spent);
            }
            if spent > Duration::from_secs(1) {
                last_pace = Instant::now();
                since_pace = 0;
            }
        } else if batches % 64 == 0 {
            std::thread::yield_now();
        }
    }
}

/// The parent's side of a workload child (`madvd workload --spec JSON`): the JSON-lines
/// protocol above. Killed and reaped on drop. Tests use it as `engine::testkit::Workload`.
pub struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pid: u32,
    mappings: Vec<AddrRange>,
    hot: AddrRange,
}

fn bad(msg: String) -> io::Error {
    io::Error::other(msg)
}

impl Client {
    /// Spawn `exe workload --spec ...` and wait until it has first-touched its memory.
    pub fn spawn(exe: &Path, spec: &WorkloadSpec) -> io::Result<Client> {
        let mut cmd = Command::new(exe);
        cmd.arg("workload").args(spec.to_args());
        Client::spawn_with(cmd)
    }

    /// As [`Client::spawn`] with a prepared command (`workload --spec ...` already added;
    /// e.g. with its own process group): stdin and stdout are piped here.
    pub fn spawn_with(mut cmd: Command) -> io::Result<Client> {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut w = Client {
            child,
            stdin,
            stdout,
            pid: 0,
            mappings: vec![],
            hot: AddrRange::new(0, 0),
        };
        match w.read_event()? {
            Event::Ready {
                pid, mappings, hot, ..
            } => {
                w.pid = pid;
                w.mappings = mappings;
                w.hot = hot;
                Ok(w)
            }
            other => Err(bad(format!("workload: expected ready, got {other:?}"))),
        }
    }

    fn read_event(&mut self) -> io::Result<Event> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            let status = self.child.wait()?;
            return Err(bad(format!("workload exited ({status})")));
        }
        serde_json::from_str(&line).map_err(|e| bad(format!("workload said {line:?}: {e}")))
    }

    fn command(&mut self, cmd: &str) -> io::Result<Event> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        match self.read_event()? {
            Event::Error { message } => Err(bad(format!("workload {cmd}: {message}"))),
            ev => Ok(ev),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// The first (or only) mapping.
    pub fn mapping(&self) -> AddrRange {
        self.mappings[0]
    }
    pub fn mappings(&self) -> &[AddrRange] {
        &self.mappings
    }
    /// The hot range at start.
    pub fn hot(&self) -> AddrRange {
        self.hot
    }
    pub fn mark(&mut self) -> io::Result<()> {
        self.command("mark").map(drop)
    }
    pub fn truth(&mut self) -> io::Result<Truth> {
        match self.command("truth")? {
            Event::Truth(t) => Ok(t),
            ev => Err(bad(format!("workload truth: got {ev:?}"))),
        }
    }
    pub fn verify(&mut self) -> io::Result<Verify> {
        match self.command("verify")? {
            Event::Verify(v) => Ok(v),
            ev => Err(bad(format!("workload verify: got {ev:?}"))),
        }
    }
    pub fn pause(&mut self) -> io::Result<()> {
        self.command("pause").map(drop)
    }
    pub fn resume(&mut self) -> io::Result<()> {
        self.command("resume").map(drop)
    }
    /// munmap `[mapping.start + off, + len)` inside the child.
    pub fn unmap(&mut self, off: u64, len: u64) -> io::Result<AddrRange> {
        match self.command(&format!("unmap {off} {len}"))? {
            Event::Unmapped { range } => Ok(range),
            ev => Err(bad(format!("workload unmap: got {ev:?}"))),
        }
    }
    /// Kill and reap now.
    pub fn kill(mut self) {
        self.reap();
    }
    fn reap(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_ranges_follow_the_pattern() {
        let mut s = WorkloadSpec {
            size: 100 * PAGE,
            hot_fraction: 0.1,
            ..Default::default()
        };
        assert_eq!(hot_pages(&s, 100, Duration::from_secs(9)), (0, 10));
        s.hot_offset = 0.5;
        assert_eq!(hot_pages(&s, 100, Duration::ZERO), (50, 60));
        s.pattern = Pattern::Moving { period_ms: 1000 };
        assert_eq!(hot_pages(&s, 100, Duration::from_millis(2500)), (70, 80));
        assert_eq!(hot_pages(&s, 100, Duration::from_millis(5500)), (0, 10));
        s.pattern = Pattern::Stairs {
            steps: 4,
            step_ms: 100,
        };
        assert_eq!(hot_pages(&s, 100, Duration::from_millis(0)), (0, 25));
        assert_eq!(hot_pages(&s, 100, Duration::from_millis(350)), (0, 100));
        assert_eq!(hot_pages(&s, 100, Duration::from_millis(400)), (0, 25));
    }

    #[test]
    fn fills_are_checkable_and_differ_by_generation() {
        for fill in [Fill::Pattern, Fill::Random] {
            let a: Vec<u64> = (0..512).map(|j| word(fill, 1, 7, 0, j)).collect();
            let b: Vec<u64> = (0..512).map(|j| word(fill, 1, 7, 1, j)).collect();
            assert_ne!(a, b);
            assert!(a.iter().any(|&w| w != a[1]), "not a same-filled page");
        }
    }

    #[test]
    fn spec_round_trips_and_validates() {
        let s = WorkloadSpec {
            pattern: Pattern::Stairs {
                steps: 5,
                step_ms: 10,
            },
            ..Default::default()
        };
        assert_eq!(WorkloadSpec::from_json(&s.to_args()[1]).unwrap(), s);
        assert!(WorkloadSpec::from_json(r#"{"size":1}"#).is_err());
        let bad = WorkloadSpec {
            hot_fraction: 0.0,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn child_runs_in_process_and_verifies() {
        // Drive run_child directly with scripted commands (no process spawn, no sleeps
        // needed for correctness: verify pauses the loop itself).
        let spec = WorkloadSpec {
            size: 64 * PAGE,
            write_fraction: 0.5,
            ..Default::default()
        };
        let cmds = io::Cursor::new("mark\nverify\ntruth\nunmap 131072 8192\nverify\nquit\n");
        let buf = Arc::new(Mutex::new(Vec::new()));
        struct W(Arc<Mutex<Vec<u8>>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        run_child(&spec, cmds, W(Arc::clone(&buf))).unwrap();
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        let evs: Vec<Event> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(matches!(evs[0], Event::Ready { .. }));
        assert_eq!(
            evs[2],
            Event::Verify(Verify {
                pages: 64,
                bad_pages: 0
            })
        );
        assert!(matches!(evs[4], Event::Unmapped { .. }), "{:?}", evs[4]);
        assert_eq!(
            evs[5],
            Event::Verify(Verify {
                pages: 62,
                bad_pages: 0
            })
        );
    }
}
