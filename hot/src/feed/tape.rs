//! Helpers every simd-json tape decoder shares: how far a value reaches on the tape, and where
//! each known key of an object sits.
//!
//! Each venue names its keys with its own `Key` enum (`messages.rs`); [`Fields`] is generic over
//! it, so the lookup is written once and stays a fixed-size array (no allocation, no hashing).

use core::marker::PhantomData;

use simd_json::Node;

/// A venue's closed set of wire keys.
pub(crate) trait WireKey: Copy {
    /// The key spelled by these bytes, if the venue's decoder uses it.
    fn from_wire(bytes: &[u8]) -> Option<Self>;
    /// Dense index, below the `N` of [`Fields`].
    fn index(self) -> usize;
}

/// Number of tape nodes a value occupies, its own node included.
#[inline]
pub(crate) fn span(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// Where each known key's value sits in the tape (0 for absent: the root is never a value).
pub(crate) struct Fields<K, const N: usize> {
    pub(crate) at: [u32; N],
    key: PhantomData<fn() -> K>,
}

impl<K, const N: usize> Clone for Fields<K, N> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, const N: usize> Copy for Fields<K, N> {}

impl<K: WireKey, const N: usize> Fields<K, N> {
    /// Records the value position of every known key of the object at `obj`;
    /// `None` if there is no object there.
    ///
    /// For a repeated key the last occurrence wins. Every tape access is checked, so a
    /// malformed tape yields `None` rather than a panic.
    #[inline]
    pub(crate) fn collect(tape: &[Node<'_>], obj: usize) -> Option<Self> {
        let Some(&Node::Object { len, .. }) = tape.get(obj) else {
            return None;
        };
        let mut fields = Self {
            at: [0; N],
            key: PhantomData,
        };
        let mut i = obj + 1;
        for _ in 0..len {
            let Some(Node::String(key)) = tape.get(i) else {
                return None;
            };
            let value = i + 1;
            let node = tape.get(value)?;
            if let Some(key) = K::from_wire(key.as_bytes()) {
                // Frames are at most MAX_FRAME_BYTES, so a tape position always fits.
                *fields.at.get_mut(key.index())? = u32::try_from(value).ok()?;
            }
            i = value + span(node);
        }
        Some(fields)
    }
}
