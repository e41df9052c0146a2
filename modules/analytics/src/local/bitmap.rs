//! Stored sets of user ordinals: roaring bitmaps in their portable serialization.

use portal_core::{Error, Result};
use roaring::RoaringBitmap;

pub(crate) fn encode(set: &RoaringBitmap) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(set.serialized_size());
    set.serialize_into(&mut out)?;
    Ok(out)
}

pub(crate) fn decode(bytes: &[u8]) -> Result<RoaringBitmap> {
    RoaringBitmap::deserialize_from(bytes).map_err(|e| Error::internal(format!("corrupt user set: {e}")))
}

/// The union of `sets`.
pub(crate) fn union<'a>(sets: impl IntoIterator<Item = &'a RoaringBitmap>) -> RoaringBitmap {
    let mut all = RoaringBitmap::new();
    for set in sets {
        all |= set;
    }
    all
}
