//! Fuzzes the exact-decimal parser: for `Price`, `Qty`, `Money` and `SignedQty`, whatever
//! `parse_bytes` accepts must print (`Display`) and parse back to the same value, and what it
//! accepts and the value it gives must agree with the independent reference parser in
//! `maxx_fuzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    maxx_fuzz::check_decimal(data);
});
