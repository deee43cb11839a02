//! Property tests of the exact decimal types: every value prints canonically and parses back to
//! itself, every decimal string with at most eight places parses to exactly its value, and no
//! input — however hostile — panics.

use maxx_hot::num::{DecimalError, Money, ONE, Price, Qty, SignedQty};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn display_then_parse_is_identity(raw in any::<i64>()) {
        let m = Money::from_raw(raw).unwrap();
        let text = m.to_string();
        prop_assert_eq!(text.parse::<Money>().unwrap(), m);
        // Canonical: no trailing zeros after a dot, no trailing dot, no "-0".
        prop_assert!(!text.ends_with('.'));
        prop_assert!(!(text.contains('.') && text.ends_with('0')), "{}", text);
        prop_assert!(text != "-0");
        if raw >= 0 {
            prop_assert_eq!(text.parse::<Price>().unwrap().raw(), raw);
            prop_assert_eq!(text.parse::<Qty>().unwrap().raw(), raw);
        } else {
            prop_assert_eq!(text.parse::<Price>(), Err(DecimalError::Sign));
        }
    }

    #[test]
    fn venue_style_strings_parse_exactly(int in 0u64..92_233_720_368, frac in 0u32..100_000_000, pad in 0usize..4) {
        // Venues pad to a fixed number of places ("61837.63000000"); any padding parses alike.
        let text = format!("{int}.{frac:08}{}", "0".repeat(pad));
        let expected = int as i64 * ONE + i64::from(frac);
        prop_assert_eq!(text.parse::<Price>().unwrap().raw(), expected);
        prop_assert_eq!(format!("-{text}").parse::<SignedQty>().unwrap().raw(), -expected);
    }

    #[test]
    fn a_ninth_significant_place_is_refused(int in 0u64..1_000_000, frac in 0u32..100_000_000, ninth in 1u8..10) {
        let text = format!("{int}.{frac:08}{ninth}");
        prop_assert_eq!(text.parse::<Qty>(), Err(DecimalError::TooPrecise));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        let p = Price::parse_bytes(&bytes);
        let m = Money::parse_bytes(&bytes);
        if let Ok(p) = p {
            prop_assert!(p.raw() >= 0);
            // Whatever parsed prints back to a string that parses to the same value.
            prop_assert_eq!(p.to_string().parse::<Price>().unwrap(), p);
        }
        if let Ok(m) = m {
            prop_assert_eq!(m.to_string().parse::<Money>().unwrap(), m);
        }
    }

    #[test]
    fn decimal_like_garbage_never_panics(s in "[-+0-9.eE ]{0,30}") {
        let _ = s.parse::<Money>();
        let _ = s.parse::<Qty>();
    }
}

#[test]
fn overflow_is_an_error_at_the_exact_boundary() {
    assert_eq!("92233720368.54775807".parse::<Money>().unwrap().raw(), i64::MAX);
    assert_eq!("92233720368.54775808".parse::<Money>(), Err(DecimalError::Overflow));
    assert_eq!("-92233720368.54775808".parse::<Money>().unwrap().raw(), i64::MIN);
    assert_eq!("-92233720368.54775809".parse::<Money>(), Err(DecimalError::Overflow));
    assert_eq!("92233720369".parse::<Price>(), Err(DecimalError::Overflow));
}
