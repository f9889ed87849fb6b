#![allow(dead_code)]
//! A counting global allocator for the benches: allocations, bytes and
//! peak live bytes, counted only on threads that opted in (so a loopback
//! server thread in the same process is not counted).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

pub struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    ON.try_with(Cell::get).unwrap_or(false)
}

fn grow(size: usize) {
    ALLOCS.fetch_add(1, Relaxed);
    BYTES.fetch_add(size, Relaxed);
    let live = LIVE.fetch_add(size, Relaxed) + size;
    PEAK.fetch_max(live, Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if counting() {
            grow(l.size());
        }
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if counting() {
            LIVE.fetch_sub(l.size().min(LIVE.load(Relaxed)), Relaxed);
        }
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if counting() {
            LIVE.fetch_sub(l.size().min(LIVE.load(Relaxed)), Relaxed);
            grow(new);
        }
        System.realloc(p, l, new)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub allocs: usize,
    pub bytes: usize,
    pub peak: usize,
}

/// Runs `f` with counting on for this thread; returns its result and the
/// allocations it made and its peak of live bytes (above what was live
/// before).
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Stats) {
    ALLOCS.store(0, Relaxed);
    BYTES.store(0, Relaxed);
    LIVE.store(0, Relaxed);
    PEAK.store(0, Relaxed);
    ON.with(|c| c.set(true));
    let out = f();
    ON.with(|c| c.set(false));
    let s = Stats {
        allocs: ALLOCS.load(Relaxed),
        bytes: BYTES.load(Relaxed),
        peak: PEAK.load(Relaxed),
    };
    (out, s)
}

/// Bytes live now that were allocated while counting (by the counting
/// thread): inside `measure`, what is held so far.
pub fn live() -> usize {
    LIVE.load(Relaxed)
}
