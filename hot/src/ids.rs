//! Venue and instrument identities, and the dense instrument index built once at start.
//!
//! Hot state is kept in plain `Vec`s indexed by [`InstrumentId`], so every lookup after start
//! is an array index. Our canonical [`Symbol`] (`BTCUSDT`, `EURUSD`) and a venue's own
//! [`VenueSymbol`] (`BTCUSDT`, `BTC-USD`, `EUR_USD`) are different types on purpose: mixing them
//! up is a compile error, not a wrong fill.

use core::fmt;

/// The venues maxx speaks to. A closed set: adding one is a code change, never a config typo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Venue {
    /// Binance Spot.
    Binance = 0,
    /// Coinbase Advanced Trade.
    Coinbase = 1,
    /// Bybit v5.
    Bybit = 2,
    /// OANDA v20.
    Oanda = 3,
}

impl Venue {
    /// Every venue, in id order.
    pub const ALL: [Venue; 4] = [Venue::Binance, Venue::Coinbase, Venue::Bybit, Venue::Oanda];
    /// Number of venues; sizes per-venue arrays.
    pub const COUNT: usize = 4;

    /// Lower-case name used in config, CLI, thread names (`md-<name>`) and records.
    pub const fn name(self) -> &'static str {
        match self {
            Venue::Binance => "binance",
            Venue::Coinbase => "coinbase",
            Venue::Bybit => "bybit",
            Venue::Oanda => "oanda",
        }
    }

    /// Parses a lower-case venue name.
    pub fn from_name(name: &str) -> Option<Venue> {
        Venue::ALL.into_iter().find(|v| v.name() == name)
    }

    /// Dense index for per-venue arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Venue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Dense id of an instrument, an index into the [`InstrumentIndex`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstrumentId(pub u16);

impl InstrumentId {
    /// The id as an index into per-instrument `Vec`s.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Longest symbol either side accepts; longer names are refused at config load.
pub const MAX_SYMBOL_LEN: usize = 24;

/// A short ASCII name stored inline, so the types that hold one stay `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct InlineName {
    len: u8,
    bytes: [u8; MAX_SYMBOL_LEN],
}

impl InlineName {
    fn new(name: &str) -> Result<Self, SymbolError> {
        if name.is_empty() {
            return Err(SymbolError::Empty);
        }
        if name.len() > MAX_SYMBOL_LEN {
            return Err(SymbolError::TooLong);
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_/.".contains(&b)) {
            return Err(SymbolError::BadChar);
        }
        let mut bytes = [0; MAX_SYMBOL_LEN];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Ok(Self {
            len: name.len() as u8,
            bytes,
        })
    }

    fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked in `new`).
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// Why a symbol name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolError {
    /// Empty name.
    Empty,
    /// Longer than [`MAX_SYMBOL_LEN`].
    TooLong,
    /// A character other than ASCII letters, digits, `-`, `_`, `/`, `.`.
    BadChar,
}

impl fmt::Display for SymbolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SymbolError::Empty => f.write_str("empty symbol"),
            SymbolError::TooLong => write!(f, "symbol longer than {MAX_SYMBOL_LEN} characters"),
            SymbolError::BadChar => f.write_str("symbol may hold only ASCII letters, digits and - _ / ."),
        }
    }
}

impl std::error::Error for SymbolError {}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(InlineName);

        impl $name {
            /// Validates and stores a name.
            pub fn new(name: &str) -> Result<Self, SymbolError> {
                InlineName::new(name).map(Self)
            }
            /// The name as text.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
            /// The name as bytes, for comparing against undecoded frame bytes.
            pub fn as_bytes(&self) -> &[u8] {
                self.0.as_bytes()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.as_str())
            }
        }
    };
}

name_type!(
    /// Our canonical instrument name, as used in stream keys (`ticks:<symbol>`) and the API.
    Symbol
);
name_type!(
    /// An instrument's name on one venue, exactly as that venue spells it in its payloads.
    VenueSymbol
);

/// One instrument as the hot path knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instrument {
    /// Dense id (its position in the index).
    pub id: InstrumentId,
    /// Canonical name.
    pub symbol: Symbol,
    /// The venue's name for it, per venue; `None` where the venue does not list it.
    pub venue_symbols: [Option<VenueSymbol>; Venue::COUNT],
}

/// The dense instrument table, built once at start from validated config and then read-only.
#[derive(Clone, Debug, Default)]
pub struct InstrumentIndex {
    instruments: Vec<Instrument>,
}

/// Why the instrument table could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexError {
    /// The same canonical symbol twice.
    DuplicateSymbol(String),
    /// Two instruments claim the same venue symbol on one venue.
    DuplicateVenueSymbol(Venue, String),
    /// More instruments than an [`InstrumentId`] can count.
    TooMany,
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexError::DuplicateSymbol(s) => write!(f, "symbol {s} is listed twice"),
            IndexError::DuplicateVenueSymbol(v, s) => {
                write!(f, "venue symbol {s} on {v} is mapped to two symbols")
            }
            IndexError::TooMany => f.write_str("too many instruments"),
        }
    }
}

impl std::error::Error for IndexError {}

impl InstrumentIndex {
    /// Builds the table; ids follow the order given, which config keeps stable.
    pub fn new(
        entries: impl IntoIterator<Item = (Symbol, [Option<VenueSymbol>; Venue::COUNT])>,
    ) -> Result<Self, IndexError> {
        let mut instruments: Vec<Instrument> = Vec::new();
        for (symbol, venue_symbols) in entries {
            if instruments.iter().any(|i| i.symbol == symbol) {
                return Err(IndexError::DuplicateSymbol(symbol.to_string()));
            }
            for venue in Venue::ALL {
                if let Some(vs) = venue_symbols[venue.index()]
                    && instruments.iter().any(|i| i.venue_symbols[venue.index()] == Some(vs))
                {
                    return Err(IndexError::DuplicateVenueSymbol(venue, vs.to_string()));
                }
            }
            let id = InstrumentId(u16::try_from(instruments.len()).map_err(|_| IndexError::TooMany)?);
            instruments.push(Instrument {
                id,
                symbol,
                venue_symbols,
            });
        }
        Ok(Self { instruments })
    }

    /// Number of instruments; per-instrument `Vec`s have this length.
    pub fn len(&self) -> usize {
        self.instruments.len()
    }

    /// `true` if no instrument is configured.
    pub fn is_empty(&self) -> bool {
        self.instruments.is_empty()
    }

    /// All instruments in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Instrument> {
        self.instruments.iter()
    }

    /// The instrument with this id.
    ///
    /// # Panics
    /// If the id did not come from this index (ids are never made up elsewhere).
    pub fn get(&self, id: InstrumentId) -> &Instrument {
        &self.instruments[id.index()]
    }

    /// The venues that list at least one instrument, in venue order.
    pub fn venues(&self) -> Vec<Venue> {
        Venue::ALL
            .into_iter()
            .filter(|v| self.instruments.iter().any(|i| i.venue_symbols[v.index()].is_some()))
            .collect()
    }

    /// Finds an instrument by canonical name.
    pub fn by_symbol(&self, symbol: &str) -> Option<InstrumentId> {
        self.instruments
            .iter()
            .find(|i| i.symbol.as_str() == symbol)
            .map(|i| i.id)
    }

    /// Finds the instrument a venue means by these payload bytes, comparing without allocating.
    ///
    /// A linear scan: with the handful of instruments one engine trades it beats hashing.
    #[inline]
    pub fn by_venue_symbol(&self, venue: Venue, name: &[u8]) -> Option<InstrumentId> {
        self.instruments
            .iter()
            .find(|i| i.venue_symbols[venue.index()].is_some_and(|vs| vs.as_bytes() == name))
            .map(|i| i.id)
    }

    /// Like [`by_venue_symbol`](Self::by_venue_symbol) but ignoring ASCII case, for stream names
    /// that venues spell in lower case (`btcusdt@trade`).
    pub fn by_venue_symbol_ignore_case(&self, venue: Venue, name: &[u8]) -> Option<InstrumentId> {
        self.instruments
            .iter()
            .find(|i| i.venue_symbols[venue.index()].is_some_and(|vs| vs.as_bytes().eq_ignore_ascii_case(name)))
            .map(|i| i.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> InstrumentIndex {
        let mut vs = [None; Venue::COUNT];
        vs[Venue::Binance.index()] = Some(VenueSymbol::new("BTCUSDT").unwrap());
        vs[Venue::Coinbase.index()] = Some(VenueSymbol::new("BTC-USD").unwrap());
        let mut eth = [None; Venue::COUNT];
        eth[Venue::Binance.index()] = Some(VenueSymbol::new("ETHUSDT").unwrap());
        InstrumentIndex::new([
            (Symbol::new("BTCUSDT").unwrap(), vs),
            (Symbol::new("ETHUSDT").unwrap(), eth),
        ])
        .unwrap()
    }

    #[test]
    fn lookups_by_each_name() {
        let idx = index();
        assert_eq!(idx.by_symbol("ETHUSDT"), Some(InstrumentId(1)));
        assert_eq!(idx.by_venue_symbol(Venue::Coinbase, b"BTC-USD"), Some(InstrumentId(0)));
        assert_eq!(idx.by_venue_symbol(Venue::Coinbase, b"ETHUSDT"), None);
        assert_eq!(
            idx.by_venue_symbol_ignore_case(Venue::Binance, b"ethusdt"),
            Some(InstrumentId(1))
        );
    }

    #[test]
    fn duplicates_and_bad_names_are_refused() {
        let s = Symbol::new("X").unwrap();
        assert!(matches!(
            InstrumentIndex::new([(s, [None; 4]), (s, [None; 4])]),
            Err(IndexError::DuplicateSymbol(_))
        ));
        assert_eq!(Symbol::new(""), Err(SymbolError::Empty));
        assert_eq!(Symbol::new("BTC USD"), Err(SymbolError::BadChar));
        assert_eq!(Symbol::new(&"A".repeat(25)), Err(SymbolError::TooLong));
    }
}
