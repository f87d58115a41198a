//! Resident memory of a typical member: the heap bytes its state holds, counted by a global
//! allocator that tracks live bytes, plus the inline size of the struct (what a map slot
//! holds). Run: `cargo bench -p omnistream-actors --bench state_size`.
//!
//! Live bytes are taken before and after the member is built by its handlers; everything else
//! the handlers allocate (effects, commands) is freed by then, so the difference is the heap
//! the member keeps, including spare capacity of its vectors, as it would sit in the engine.

use omnistream_actors::member::Member;
use omnistream_actors::Rules;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

mod common;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout as asked.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as given.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn main() {
    let rules = Rules::default();
    let before = LIVE.load(Ordering::Relaxed);
    let (_me, member) = common::typical_member(&rules);
    let heap = LIVE.load(Ordering::Relaxed) - before;
    let inline = std::mem::size_of::<Member>();
    let json = serde_json::to_vec(&member).map(|v| v.len()).unwrap_or(0);
    println!(
        "typical member: {} bytes resident ({inline} inline + {heap} heap); {json} bytes as JSON; \
         {} identities, {} days, {} orders kept, {} recent ids, {} lots",
        inline as isize + heap,
        member.ids.len(),
        member.days.len(),
        member.orders.len(),
        member.recent.0.len(),
        member.points.lots.len(),
    );
    std::hint::black_box(member);
}
