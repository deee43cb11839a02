//! Exact decimal money: prices, quantities, signed positions and cash amounts.
//!
//! Every value is an `i64` count of 10^-8 units (the precision Binance, Bybit and Coinbase
//! quote in, and finer than OANDA's 5 decimals), so `"62650.20"` parses to exactly
//! 6_265_020_000_000 and prints back as `62650.2`.
//! There is no float anywhere on this path: the venues send decimal strings, and the parser
//! reads the bytes straight into the integer without allocating.
//!
//! The four types differ only in which values they admit:
//! [`Price`] is strictly positive when it comes from a venue (zero is allowed in parsing so that
//! "no quote" can be represented, decoders reject it), [`Qty`] is non-negative,
//! [`SignedQty`] (positions) and [`Money`] (cash, PnL, fees) may be negative.

use core::fmt;

/// Decimal places carried by every fixed-point value in this module.
pub const DECIMALS: u32 = 8;
/// `10^DECIMALS`: the raw integer that represents one whole unit.
pub const ONE: i64 = 100_000_000;

/// Why a decimal string was refused.
///
/// The variants are small and `Copy` so that the hot decoders can count them per reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecimalError {
    /// The input was empty (or only a sign).
    Empty,
    /// A byte that is not a digit, or a misplaced `.`, at this offset.
    InvalidChar(usize),
    /// A `-` on a type that cannot be negative, or a `+` sign (never sent by a venue).
    Sign,
    /// A non-zero digit beyond the eighth decimal: the value cannot be represented exactly.
    TooPrecise,
    /// The value does not fit in the type.
    Overflow,
}

impl fmt::Display for DecimalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty decimal"),
            Self::InvalidChar(at) => write!(f, "invalid character at offset {at}"),
            Self::Sign => f.write_str("sign not allowed here"),
            Self::TooPrecise => write!(f, "more than {DECIMALS} decimals"),
            Self::Overflow => f.write_str("value out of range"),
        }
    }
}

impl std::error::Error for DecimalError {}

/// Parses a plain decimal (`digits[.digits]`, optional leading `-`) into raw 10^-8 units.
///
/// Rules, chosen to be strict about everything a venue never sends:
/// no exponent, no `+`, no leading or trailing `.`, no whitespace, no leading zeros are
/// *required* to be absent (`"007"` is 7), and digits past the eighth decimal are accepted only
/// if they are all zero, because then the value is still exact.
#[inline]
pub fn parse_raw(bytes: &[u8], allow_negative: bool) -> Result<i64, DecimalError> {
    let (negative, digits) = match bytes.first() {
        None => return Err(DecimalError::Empty),
        Some(b'-') if allow_negative => (true, &bytes[1..]),
        Some(b'-') | Some(b'+') => return Err(DecimalError::Sign),
        Some(_) => (false, bytes),
    };
    if digits.is_empty() {
        return Err(DecimalError::Empty);
    }
    let offset = bytes.len() - digits.len();
    // Accumulate as a negative number so that i64::MIN is reachable and overflow is one check.
    let mut acc: i64 = 0;
    let mut int_digits = 0usize;
    let mut frac_digits: u32 = 0;
    let mut seen_dot = false;
    for (i, &b) in digits.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                let d = i64::from(b - b'0');
                if seen_dot {
                    if frac_digits == DECIMALS {
                        if d != 0 {
                            return Err(DecimalError::TooPrecise);
                        }
                        continue;
                    }
                    frac_digits += 1;
                } else {
                    int_digits += 1;
                }
                acc = acc
                    .checked_mul(10)
                    .and_then(|a| a.checked_sub(d))
                    .ok_or(DecimalError::Overflow)?;
            }
            b'.' if !seen_dot && int_digits > 0 && i + 1 < digits.len() => seen_dot = true,
            _ => return Err(DecimalError::InvalidChar(offset + i)),
        }
    }
    let scaled = acc
        .checked_mul(10i64.pow(DECIMALS - frac_digits))
        .ok_or(DecimalError::Overflow)?;
    if negative {
        Ok(scaled)
    } else {
        scaled.checked_neg().ok_or(DecimalError::Overflow)
    }
}

/// Writes `raw` 10^-8 units in canonical form: no trailing zeros, no trailing `.`, `0` for zero.
pub fn fmt_raw(raw: i64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut buf = [0u8; 24];
    let len = write_raw(raw, &mut buf);
    // The buffer holds only ASCII digits, '-' and '.'.
    f.write_str(core::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)
}

/// Writes the canonical form of `raw` into `out` and returns its length; never allocates.
///
/// 24 bytes hold any i64 (20 characters with sign and dot).
pub fn write_raw(raw: i64, out: &mut [u8; 24]) -> usize {
    let negative = raw < 0;
    let magnitude = raw.unsigned_abs();
    let int = magnitude / ONE as u64;
    let mut frac = magnitude % ONE as u64;
    let mut len = 0;
    if negative {
        out[0] = b'-';
        len = 1;
    }
    let mut int_buf = [0u8; 20];
    let mut n = int;
    let mut i = int_buf.len();
    loop {
        i -= 1;
        int_buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let int_len = int_buf.len() - i;
    out[len..len + int_len].copy_from_slice(&int_buf[i..]);
    len += int_len;
    if frac != 0 {
        let mut places = DECIMALS as usize;
        while frac.is_multiple_of(10) {
            frac /= 10;
            places -= 1;
        }
        out[len] = b'.';
        len += 1;
        for p in (0..places).rev() {
            out[len + p] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        len += places;
    }
    len
}

macro_rules! decimal_type {
    ($(#[$doc:meta])* $name:ident, negative: $neg:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(i64);

        impl $name {
            /// Zero.
            pub const ZERO: Self = Self(0);
            /// The largest representable value.
            pub const MAX: Self = Self(i64::MAX);

            /// Wraps a raw count of 10^-8 units, refusing values outside the type's domain.
            #[inline]
            pub const fn from_raw(raw: i64) -> Option<Self> {
                if !$neg && raw < 0 { None } else { Some(Self(raw)) }
            }

            /// The raw count of 10^-8 units.
            #[inline]
            pub const fn raw(self) -> i64 {
                self.0
            }

            /// Parses a decimal string as sent by a venue, without allocating.
            #[inline]
            pub fn parse_bytes(bytes: &[u8]) -> Result<Self, DecimalError> {
                parse_raw(bytes, $neg).map(Self)
            }

            /// Builds a value from whole units, e.g. `from_units(5)` is `5`.
            pub const fn from_units(units: i64) -> Option<Self> {
                match units.checked_mul(ONE) {
                    Some(raw) => Self::from_raw(raw),
                    None => None,
                }
            }

            /// `true` if the value is zero.
            #[inline]
            pub const fn is_zero(self) -> bool {
                self.0 == 0
            }

            /// Adds, returning `None` on overflow.
            #[inline]
            pub const fn checked_add(self, other: Self) -> Option<Self> {
                match self.0.checked_add(other.0) {
                    Some(raw) => Self::from_raw(raw),
                    None => None,
                }
            }

            /// Subtracts, returning `None` on overflow or when leaving the type's domain.
            #[inline]
            pub const fn checked_sub(self, other: Self) -> Option<Self> {
                match self.0.checked_sub(other.0) {
                    Some(raw) => Self::from_raw(raw),
                    None => None,
                }
            }
        }

        impl core::str::FromStr for $name {
            type Err = DecimalError;
            fn from_str(s: &str) -> Result<Self, DecimalError> {
                Self::parse_bytes(s.as_bytes())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt_raw(self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

decimal_type!(
    /// A price in quote currency, exact to 10^-8. Never negative.
    Price, negative: false
);
decimal_type!(
    /// An order or trade quantity in base units, exact to 10^-8. Never negative.
    Qty, negative: false
);
decimal_type!(
    /// A signed position in base units (long positive, short negative).
    SignedQty, negative: true
);
decimal_type!(
    /// A signed cash amount in quote currency: notional, fees, PnL, equity.
    Money, negative: true
);

impl SignedQty {
    /// The magnitude as an unsigned quantity.
    #[inline]
    pub const fn abs(self) -> Qty {
        // |i64::MIN| does not fit; positions that large are refused long before by risk.
        Qty(self.0.saturating_abs())
    }
}

impl Qty {
    /// This quantity as a signed position: positive for a buy, negative for a sell.
    #[inline]
    pub const fn signed(self, buy: bool) -> SignedQty {
        if buy { SignedQty(self.0) } else { SignedQty(-self.0) }
    }
}

impl Money {
    /// Negation, saturating at the bounds.
    #[inline]
    pub const fn neg(self) -> Self {
        Self(self.0.saturating_neg())
    }
}

/// `price × qty` in quote currency, truncated toward zero at 10^-8; `None` if it overflows.
///
/// The intermediate is i128, so no two valid operands overflow before the final narrowing.
#[inline]
pub fn notional(price: Price, qty: Qty) -> Option<Money> {
    let wide = i128::from(price.raw()) * i128::from(qty.raw()) / i128::from(ONE);
    i64::try_from(wide).ok().map(Money)
}

/// A fee of `bps` hundredths of a percent on `amount`, rounded **up** to the next 10^-8.
///
/// Rounding fees against ourselves keeps paper PnL conservative and is deterministic.
/// `bps_milli` is the fee rate in thousandths of a basis point (so 7.5 bps is 7500),
/// which keeps fractional tiers exact without a float.
#[inline]
pub fn fee(amount: Money, bps_milli: i64) -> Option<Money> {
    let denom: i128 = 10_000 * 1_000;
    let num = i128::from(amount.raw().unsigned_abs() as i64) * i128::from(bps_milli);
    let up = (num + denom - 1).div_euclid(denom);
    i64::try_from(up).ok().map(Money)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn venue_strings_round_trip_canonically() {
        let p: Price = "61837.63000000".parse().unwrap();
        assert_eq!(p.raw(), 6_183_763_000_000);
        assert_eq!(p.to_string(), "61837.63");
        assert_eq!("62650.20".parse::<Price>().unwrap().to_string(), "62650.2");
        assert_eq!("0.00000001".parse::<Qty>().unwrap().raw(), 1);
        assert_eq!("0".parse::<Qty>().unwrap().to_string(), "0");
        assert_eq!("100".parse::<Qty>().unwrap().to_string(), "100");
        assert_eq!("-1.5".parse::<Money>().unwrap().to_string(), "-1.5");
        assert_eq!("-0.00000001".parse::<SignedQty>().unwrap().to_string(), "-0.00000001");
    }

    #[test]
    fn bounds() {
        assert_eq!(Price::MAX.to_string(), "92233720368.54775807");
        assert_eq!("92233720368.54775807".parse::<Price>().unwrap(), Price::MAX);
        assert_eq!("92233720368.54775808".parse::<Price>(), Err(DecimalError::Overflow));
        assert_eq!("-92233720368.54775808".parse::<Money>().unwrap().raw(), i64::MIN);
        assert_eq!(Money::from_raw(i64::MIN).unwrap().to_string(), "-92233720368.54775808");
        assert_eq!("99999999999999999999".parse::<Qty>(), Err(DecimalError::Overflow));
        assert_eq!("1.000000001".parse::<Qty>(), Err(DecimalError::TooPrecise));
        assert_eq!("1.0000000000".parse::<Qty>().unwrap().to_string(), "1");
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert_eq!("".parse::<Price>(), Err(DecimalError::Empty));
        assert_eq!("-".parse::<Money>(), Err(DecimalError::Empty));
        assert_eq!("-1".parse::<Price>(), Err(DecimalError::Sign));
        assert_eq!("+1".parse::<Money>(), Err(DecimalError::Sign));
        assert_eq!("1e5".parse::<Price>(), Err(DecimalError::InvalidChar(1)));
        assert_eq!(".5".parse::<Price>(), Err(DecimalError::InvalidChar(0)));
        assert_eq!("5.".parse::<Price>(), Err(DecimalError::InvalidChar(1)));
        assert_eq!("1.2.3".parse::<Price>(), Err(DecimalError::InvalidChar(3)));
        assert_eq!(" 1".parse::<Price>(), Err(DecimalError::InvalidChar(0)));
        assert_eq!("NaN".parse::<Price>(), Err(DecimalError::InvalidChar(0)));
        assert_eq!("-1-".parse::<Money>(), Err(DecimalError::InvalidChar(2)));
    }

    #[test]
    fn notional_and_fee_are_exact() {
        let p: Price = "61837.63".parse().unwrap();
        let q: Qty = "0.02".parse().unwrap();
        assert_eq!(notional(p, q).unwrap().to_string(), "1236.7526");
        // 7.5 bps of 1236.7526 = 0.92756445, exact.
        assert_eq!(fee(notional(p, q).unwrap(), 7_500).unwrap().to_string(), "0.92756445");
        // 1 bps of 0.00000001 rounds up to one unit.
        assert_eq!(fee(Money::from_raw(1).unwrap(), 1_000).unwrap().raw(), 1);
        assert_eq!(fee(Money::ZERO, 1_000).unwrap(), Money::ZERO);
    }
}
