//! The OANDA v20 pricing-stream wire vocabulary: the field names the decoder reads and the
//! line types it tells apart.
//!
//! The stream is newline-delimited JSON over one long HTTP response (`venues.md` §4); every
//! line is one object. Shapes, as documented there and in the fixtures under
//! `shared/fixtures/venues/oanda/`:
//!
//! | Line | Recognised by | Becomes |
//! | --- | --- | --- |
//! | price (`ClientPrice`) | `"type":"PRICE"`, or no `type` and an `instrument` | a quote tick |
//! | price, market closed | `"tradeable":false`, or (without `tradeable`) a `status` other than `"tradeable"` | skipped, other |
//! | price older than the newest seen for its instrument | its `time` | skipped, other |
//! | heartbeat | `"type":"HEARTBEAT"` | control: heartbeat |
//! | any other `type` | `type` | skipped, other |
//!
//! The docs' own example lines carry neither `type` nor `tradeable`, while the schema (and the
//! live stream) has both, so both forms are accepted.
//! Every other key (`closeoutBid`, `closeoutAsk`, `quoteHomeConversionFactors`, ...) is skipped
//! without a look; closeout prices are for closing positions when there is no liquidity and are
//! never a quote.
//!
//! Times (`time`) are RFC 3339 strings with up to nine fractional digits
//! (`2016-09-20T15:05:47.960449532Z`), or, when the request asked for
//! `Accept-Datetime-Format: UNIX`, decimal strings of epoch seconds (`1502462040.000000000`);
//! the decoder accepts both on any connection.
//! A time string that is not well formed is refused as [`BadDecimal`](crate::feed::DecodeReason::BadDecimal)
//! (it is digits and separators, like a decimal); a well-formed one naming an impossible
//! instant (month 13, February 30, before 1970, after 2554) as
//! [`OutOfRange`](crate::feed::DecodeReason::OutOfRange).

/// A wire key the decoder reads. Its discriminant indexes the decoder's per-object field table.
///
/// One table serves both the line object and the price levels inside `bids` and `asks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Key {
    /// `type`: `PRICE` or `HEARTBEAT`; absent in the docs' example price lines.
    Type = 0,
    /// `time`: when the price was created (RFC 3339 or UNIX seconds, both as strings).
    Time = 1,
    /// `instrument`: the venue symbol, `BASE_QUOTE` (`EUR_USD`).
    Instrument = 2,
    /// `bids`: bid levels, best (highest) first.
    Bids = 3,
    /// `asks`: ask levels, best (lowest) first.
    Asks = 4,
    /// `tradeable`: whether the price can be traded on now (`false` while the market is closed).
    Tradeable = 5,
    /// `status`: the older, superseded form of `tradeable` (`tradeable`, `non-tradeable`, `invalid`).
    Status = 6,
    /// `price`: a level's price (decimal string).
    Price = 7,
    /// `liquidity`: a level's size in units (JSON integer).
    Liquidity = 8,
}

impl Key {
    /// Number of keys; sizes the decoder's field table.
    pub const COUNT: usize = 9;

    /// The key as spelled on the wire; also the `field` of a decode error about it.
    pub const fn wire(self) -> &'static str {
        match self {
            Key::Type => "type",
            Key::Time => "time",
            Key::Instrument => "instrument",
            Key::Bids => "bids",
            Key::Asks => "asks",
            Key::Tradeable => "tradeable",
            Key::Status => "status",
            Key::Price => "price",
            Key::Liquidity => "liquidity",
        }
    }

    /// The key these bytes spell, or `None` for a key the decoder does not read.
    #[inline]
    pub fn from_wire(bytes: &[u8]) -> Option<Key> {
        match bytes {
            b"type" => Some(Key::Type),
            b"time" => Some(Key::Time),
            b"instrument" => Some(Key::Instrument),
            b"bids" => Some(Key::Bids),
            b"asks" => Some(Key::Asks),
            b"tradeable" => Some(Key::Tradeable),
            b"status" => Some(Key::Status),
            b"price" => Some(Key::Price),
            b"liquidity" => Some(Key::Liquidity),
            _ => None,
        }
    }
}

/// The value of the `type` field, as far as the decoder tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LineType {
    /// `PRICE`: a `ClientPrice`.
    Price,
    /// `HEARTBEAT`: a `PricingHeartbeat`, sent every 5 seconds.
    Heartbeat,
    /// Anything else; the stream documents no other type.
    Other,
}

impl LineType {
    /// The type these bytes spell; unknown names are [`LineType::Other`].
    #[inline]
    pub fn from_wire(bytes: &[u8]) -> LineType {
        match bytes {
            b"PRICE" => LineType::Price,
            b"HEARTBEAT" => LineType::Heartbeat,
            _ => LineType::Other,
        }
    }
}

/// The value of the older `status` field, read only when `tradeable` is absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PriceStatus {
    /// `tradeable`.
    Tradeable,
    /// `non-tradeable`: the market is closed.
    NonTradeable,
    /// `invalid`: the price is not valid.
    Invalid,
    /// Any other spelling, treated like a closed market.
    Other,
}

impl PriceStatus {
    /// The status these bytes spell.
    #[inline]
    pub fn from_wire(bytes: &[u8]) -> PriceStatus {
        match bytes {
            b"tradeable" => PriceStatus::Tradeable,
            b"non-tradeable" => PriceStatus::NonTradeable,
            b"invalid" => PriceStatus::Invalid,
            _ => PriceStatus::Other,
        }
    }
}

/// The wire names of a best level's fields, used as the `field` of decode errors so that a
/// bad bid is told apart from a bad ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelFields {
    /// The side's array key (`bids`).
    pub side: &'static str,
    /// The best level itself (`bids[0]`).
    pub level: &'static str,
    /// Its price (`bids[0].price`).
    pub price: &'static str,
    /// Its liquidity (`bids[0].liquidity`).
    pub liquidity: &'static str,
}

/// Error field names for the best bid.
pub const BID_FIELDS: LevelFields = LevelFields {
    side: "bids",
    level: "bids[0]",
    price: "bids[0].price",
    liquidity: "bids[0].liquidity",
};

/// Error field names for the best ask.
pub const ASK_FIELDS: LevelFields = LevelFields {
    side: "asks",
    level: "asks[0]",
    price: "asks[0].price",
    liquidity: "asks[0].liquidity",
};

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_KEYS: [Key; Key::COUNT] = [
        Key::Type,
        Key::Time,
        Key::Instrument,
        Key::Bids,
        Key::Asks,
        Key::Tradeable,
        Key::Status,
        Key::Price,
        Key::Liquidity,
    ];

    #[test]
    fn every_key_round_trips_through_its_wire_name() {
        for (i, key) in ALL_KEYS.into_iter().enumerate() {
            assert_eq!(key as usize, i);
            assert_eq!(Key::from_wire(key.wire().as_bytes()), Some(key));
        }
        assert_eq!(Key::from_wire(b"closeoutBid"), None);
        assert_eq!(Key::from_wire(b"Type"), None);
        assert_eq!(Key::from_wire(b""), None);
    }

    #[test]
    fn types_and_statuses_are_told_apart() {
        assert_eq!(LineType::from_wire(b"PRICE"), LineType::Price);
        assert_eq!(LineType::from_wire(b"HEARTBEAT"), LineType::Heartbeat);
        assert_eq!(LineType::from_wire(b"price"), LineType::Other);
        assert_eq!(PriceStatus::from_wire(b"tradeable"), PriceStatus::Tradeable);
        assert_eq!(PriceStatus::from_wire(b"non-tradeable"), PriceStatus::NonTradeable);
        assert_eq!(PriceStatus::from_wire(b"invalid"), PriceStatus::Invalid);
        assert_eq!(PriceStatus::from_wire(b"closed"), PriceStatus::Other);
    }
}
