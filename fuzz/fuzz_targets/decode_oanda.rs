//! Fuzzes the Oanda decoder: arbitrary bytes, split into up to 16 frames on the separators of
//! `maxx_fuzz`, go through one fresh `OandaDecoder`, and every result must keep the decoder
//! invariants (no panic; every tick positive-priced, positive-sized if a trade, about an
//! instrument this venue lists in the index; at most `MAX_TICKS_PER_FRAME` ticks per frame).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use maxx_hot::feed::oanda::parse::OandaDecoder;
use maxx_hot::ids::{InstrumentIndex, Venue};

/// Built once per process: the index is read-only, and building it per input would only slow
/// the fuzzer down.
static INDEX: OnceLock<InstrumentIndex> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let index = INDEX.get_or_init(maxx_fuzz::index);
    // A fresh decoder per input, so that a crash reproduces from its input alone.
    let mut decoder = OandaDecoder::new();
    maxx_fuzz::run_decoder(&mut decoder, Venue::Oanda, index, data);
});
