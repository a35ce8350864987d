//! The workload child itself: map and first-touch the memory, run the access loop on one
//! thread, answer the commands of the protocol (see the crate documentation) on another.

use crate::memory::{splitmix, Memory};
use crate::spec::{hot_pages, Event, Pattern, Truth, Verify, WorkloadSpec, PAGE};
use engine::AddrRange;
use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

fn emit(out: &Mutex<Box<dyn Write + Send>>, ev: &Event) {
    let mut o = out.lock().expect("stdout lock");
    // A parent that went away is not our problem: the child exits on stdin EOF.
    let _ = crate::spec::write_event(&mut *o, ev);
}

/// Run the workload child: map, first-touch, loop, answer commands until `quit` or EOF.
pub fn run_child(
    spec: &WorkloadSpec,
    control: impl BufRead,
    out: impl Write + Send + 'static,
) -> io::Result<()> {
    spec.validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if let Some(f) = &spec.fork_children {
        return crate::fork::run_forker(f, control, out);
    }
    if let Some(t) = &spec.thp {
        return crate::thp::run_thp(spec, t, control, out);
    }
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
        loop_cpu_ms: None,
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

/// One access to `page` (skipped when unmapped): a write of its next generation with
/// probability `write_thres / 2^32`, else a read of one word; marked touched.
fn touch(st: &State, page: u64, rng: u64, write_thres: u64) {
    let g = st.gens[page as usize].load(Ordering::Relaxed);
    if g == UNMAPPED {
        return;
    }
    if (rng >> 32) < write_thres {
        st.mem.write_page(&st.spec, page, g as u32 + 1);
        st.gens[page as usize].store(g + 1, Ordering::Relaxed);
    } else {
        let p = st.mem.addr(page) as *const u64;
        // SAFETY: a mapped page of ours (checked not unmapped above, and unmap
        // waits for `in_loop`, which every caller holds); reading one word of it.
        std::hint::black_box(unsafe { p.add((rng >> 40) as usize % 512).read_volatile() });
    }
    st.touched[(page / 64) as usize].fetch_or(1 << (page % 64), Ordering::Relaxed);
}

/// The access loop of a script ([`crate::Script`]): in each interval, pass over the
/// interval's pages again and again until the interval ends.
fn scripted_loop(st: &State, script: &crate::Script) {
    let base = st.mem.addr(0);
    let pattern = crate::scripted::at_base(script, base);
    let write_thres = (st.spec.write_fraction * u32::MAX as f64) as u64;
    let mut rng = st.spec.seed ^ 0x5851_f42d_4c95_7f2d;
    let mut current: Option<(u64, Vec<u64>)> = None;
    while !st.quit.load(Ordering::Relaxed) {
        if st.paused.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let i = st.start.elapsed().as_millis() as u64 / script.interval_ms;
        if current.as_ref().map(|c| c.0) != Some(i) {
            let pages = crate::scripted::touched(&pattern, st.spec.seed, i, base, st.mem.pages);
            current = Some((i, pages));
        }
        let pages = &current.as_ref().expect("set above").1;
        if pages.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let guard = st.in_loop.lock().expect("loop lock");
        if st.paused.load(Ordering::SeqCst) {
            continue;
        }
        for &page in pages {
            rng = splitmix(rng);
            touch(st, page, rng, write_thres);
        }
        drop(guard);
        st.ops.fetch_add(pages.len() as u64, Ordering::Relaxed);
        std::thread::yield_now();
    }
}

fn access_loop(st: &State) {
    if let Some(script) = &st.spec.script {
        return scripted_loop(st, script);
    }
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
            touch(st, h0 + rng % span, rng, write_thres);
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
