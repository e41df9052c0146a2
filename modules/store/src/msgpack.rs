//! Records read back from their MessagePack: what rmp-serde reads from what it wrote (named structs,
//! positional ones too, enums as a variant's name or a one-entry map), with one difference: a struct's
//! field names reach serde's derived field matching as bytes, without first being checked as UTF-8
//! (a quarter of an invoice's decoding: every field name of every record read). Text values are still
//! checked.

use std::fmt::{self, Display};

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::Deserialize;

/// Reads a `T` from the start of `bytes` (what follows it is left unread, as rmp-serde does).
pub fn from_slice<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, DecodeError> {
    T::deserialize(&mut Decoder { input: bytes, depth: 0 })
}

/// Why bytes did not read as the record.
#[derive(Debug)]
pub struct DecodeError(String);

impl Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<M: Display>(message: M) -> Self {
        Self(message.to_string())
    }
}

fn error(message: &str) -> DecodeError {
    DecodeError(message.to_string())
}

/// Nesting deeper than this is refused rather than recursed into (rmp-serde's limit too).
const MAX_DEPTH: u16 = 1024;

struct Decoder<'de> {
    input: &'de [u8],
    depth: u16,
}

/// What a marker byte announces.
enum Item<'de> {
    Nil,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    F32(f32),
    F64(f64),
    Str(&'de [u8]),
    Bin(&'de [u8]),
    Array(u32),
    Map(u32),
}

impl<'de> Decoder<'de> {
    fn take(&mut self, n: usize) -> Result<&'de [u8], DecodeError> {
        if n > self.input.len() {
            return Err(error("the record ends early"));
        }
        let (taken, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| error("the record ends early"))
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let [byte] = self.array()?;
        Ok(byte)
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.input.first().copied().ok_or_else(|| error("the record ends early"))
    }

    fn len(&mut self, width: usize) -> Result<u32, DecodeError> {
        Ok(match width {
            1 => u32::from(self.byte()?),
            2 => u32::from(u16::from_be_bytes(self.array()?)),
            _ => u32::from_be_bytes(self.array()?),
        })
    }

    fn bytes(&mut self, width: usize) -> Result<&'de [u8], DecodeError> {
        let len = self.len(width)?;
        self.take(len as usize)
    }

    /// Reads one marker and what belongs to it, short of an array's or a map's elements.
    fn item(&mut self) -> Result<Item<'de>, DecodeError> {
        let marker = self.byte()?;
        Ok(match marker {
            0x00..=0x7f => Item::Unsigned(u64::from(marker)),
            0x80..=0x8f => Item::Map(u32::from(marker & 0x0f)),
            0x90..=0x9f => Item::Array(u32::from(marker & 0x0f)),
            0xa0..=0xbf => Item::Str(self.take(usize::from(marker & 0x1f))?),
            0xc0 => Item::Nil,
            0xc2 => Item::Bool(false),
            0xc3 => Item::Bool(true),
            0xc4 => Item::Bin(self.bytes(1)?),
            0xc5 => Item::Bin(self.bytes(2)?),
            0xc6 => Item::Bin(self.bytes(4)?),
            0xca => Item::F32(f32::from_be_bytes(self.array()?)),
            0xcb => Item::F64(f64::from_be_bytes(self.array()?)),
            0xcc => Item::Unsigned(u64::from(self.byte()?)),
            0xcd => Item::Unsigned(u64::from(u16::from_be_bytes(self.array()?))),
            0xce => Item::Unsigned(u64::from(u32::from_be_bytes(self.array()?))),
            0xcf => Item::Unsigned(u64::from_be_bytes(self.array()?)),
            0xd0 => Item::Signed(i64::from(i8::from_be_bytes(self.array()?))),
            0xd1 => Item::Signed(i64::from(i16::from_be_bytes(self.array()?))),
            0xd2 => Item::Signed(i64::from(i32::from_be_bytes(self.array()?))),
            0xd3 => Item::Signed(i64::from_be_bytes(self.array()?)),
            0xd9 => Item::Str(self.bytes(1)?),
            0xda => Item::Str(self.bytes(2)?),
            0xdb => Item::Str(self.bytes(4)?),
            0xdc => Item::Array(self.len(2)?),
            0xdd => Item::Array(self.len(4)?),
            0xde => Item::Map(self.len(2)?),
            0xdf => Item::Map(self.len(4)?),
            0xe0..=0xff => Item::Signed(i64::from(i8::from_be_bytes([marker]))),
            // Extension types (0xc7–0xc9, 0xd4–0xd8) are never written for records; 0xc1 is unused.
            other => return Err(DecodeError(format!("unexpected MessagePack marker 0x{other:02x}"))),
        })
    }

    fn nested<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T, DecodeError>) -> Result<T, DecodeError> {
        if self.depth >= MAX_DEPTH {
            return Err(error("the record nests too deeply"));
        }
        self.depth += 1;
        let result = read(self);
        self.depth -= 1;
        result
    }

    fn elements<V: Visitor<'de>>(&mut self, len: u32, map: bool, visitor: V) -> Result<V::Value, DecodeError> {
        self.nested(|decoder| {
            let mut access = Elements { decoder, left: len };
            let value = if map { visitor.visit_map(&mut access)? } else { visitor.visit_seq(&mut access)? };
            match access.left {
                0 => Ok(value),
                left => Err(DecodeError(format!("{left} of {len} elements left unread"))),
            }
        })
    }

    /// Text as serde expects it: checked as UTF-8 (rmp-serde offers what is not as bytes instead).
    fn text<V: Visitor<'de>>(bytes: &'de [u8], visitor: V) -> Result<V::Value, DecodeError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => visitor.visit_borrowed_str(text),
            Err(e) => visitor.visit_borrowed_bytes(bytes).map_err(|_: DecodeError| DecodeError(e.to_string())),
        }
    }

    /// Skips one value, however nested.
    fn skip(&mut self) -> Result<(), DecodeError> {
        match self.item()? {
            Item::Array(len) => self.nested(|decoder| (0..len).try_for_each(|_| decoder.skip())),
            Item::Map(len) => self.nested(|decoder| (0..u64::from(len) * 2).try_for_each(|_| decoder.skip())),
            _ => Ok(()),
        }
    }
}

impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.item()? {
            Item::Nil => visitor.visit_unit(),
            Item::Bool(b) => visitor.visit_bool(b),
            Item::Unsigned(n) => visitor.visit_u64(n),
            Item::Signed(n) => visitor.visit_i64(n),
            Item::F32(x) => visitor.visit_f32(x),
            Item::F64(x) => visitor.visit_f64(x),
            Item::Str(bytes) => Decoder::text(bytes, visitor),
            Item::Bin(bytes) => visitor.visit_borrowed_bytes(bytes),
            Item::Array(len) => self.elements(len, false, visitor),
            Item::Map(len) => self.elements(len, true, visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.peek()? {
            0xc0 => {
                self.take(1)?;
                visitor.visit_none()
            }
            _ => visitor.visit_some(self),
        }
    }

    /// A field's or a variant's name: matched as bytes, which serde's derived matching accepts as well.
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        // Most names are short enough for the one-byte string marker: read them without `item`'s match.
        if let Some((&marker, rest)) = self.input.split_first() {
            if marker & 0xe0 == 0xa0 {
                if let Some((name, rest)) = rest.split_at_checked(usize::from(marker & 0x1f)) {
                    self.input = rest;
                    return visitor.visit_borrowed_bytes(name);
                }
            }
        }
        match self.peek()? {
            0xa0..=0xbf | 0xd9..=0xdb => match self.item()? {
                Item::Str(bytes) => visitor.visit_borrowed_bytes(bytes),
                _ => Err(error("a name that is not text")),
            },
            _ => self.deserialize_any(visitor),
        }
    }

    /// A variant's name alone (unit variants), or a map of its name to its content.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        match self.item()? {
            Item::Map(1) => self.nested(|decoder| visitor.visit_enum(Variant { decoder })),
            Item::Str(bytes) => {
                let name = std::str::from_utf8(bytes).map_err(|e| DecodeError(e.to_string()))?;
                visitor.visit_enum(name.into_deserializer())
            }
            _ => Err(error("an enum that is neither a variant's name nor a map of one variant to its content")),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_newtype_struct(self)
    }

    /// rmp-serde writes 128-bit integers as 16 bytes, big-endian.
    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.peek()? {
            0xc4 => visitor.visit_i128(i128::from_be_bytes(self.wide()?)),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.peek()? {
            0xc4 => visitor.visit_u128(u128::from_be_bytes(self.wide()?)),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.skip()?;
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 u8 u16 u32 u64 f32 f64 char str string bytes byte_buf unit unit_struct seq
        tuple tuple_struct map struct
    }
}

impl Decoder<'_> {
    /// The 16 bytes of a 128-bit integer.
    fn wide(&mut self) -> Result<[u8; 16], DecodeError> {
        match self.item()? {
            Item::Bin(bytes) => bytes.try_into().map_err(|_| error("a 128-bit integer that is not 16 bytes")),
            _ => Err(error("a 128-bit integer that is not 16 bytes")),
        }
    }
}

/// The elements of an array (as a sequence) or the entries of a map.
struct Elements<'a, 'de> {
    decoder: &'a mut Decoder<'de>,
    left: u32,
}

impl Elements<'_, '_> {
    fn next(&mut self) -> bool {
        let more = self.left > 0;
        self.left = self.left.saturating_sub(1);
        more
    }
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DecodeError> {
        match self.next() {
            true => seed.deserialize(&mut *self.decoder).map(Some),
            false => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        usize::try_from(self.left).ok()
    }
}

impl<'de> de::MapAccess<'de> for Elements<'_, 'de> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DecodeError> {
        match self.next() {
            true => seed.deserialize(&mut *self.decoder).map(Some),
            false => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DecodeError> {
        seed.deserialize(&mut *self.decoder)
    }

    fn size_hint(&self) -> Option<usize> {
        usize::try_from(self.left).ok()
    }
}

/// A variant written as a one-entry map: its name, then its content.
struct Variant<'a, 'de> {
    decoder: &'a mut Decoder<'de>,
}

impl<'a, 'de> de::EnumAccess<'de> for Variant<'a, 'de> {
    type Error = DecodeError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), DecodeError> {
        let name = seed.deserialize(&mut *self.decoder)?;
        Ok((name, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = DecodeError;

    fn unit_variant(self) -> Result<(), DecodeError> {
        self.decoder.skip()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DecodeError> {
        seed.deserialize(&mut *self.decoder)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DecodeError> {
        de::Deserializer::deserialize_any(&mut *self.decoder, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        de::Deserializer::deserialize_any(&mut *self.decoder, visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fmt::Debug;

    use serde::{Deserialize, Serialize};

    use super::from_slice;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Kind {
        Unit,
        Newtype(i32),
        Tuple(u8, String),
        Struct { a: Option<bool>, b: Vec<u16> },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Inner {
        name: String,
        at: i64,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Everything {
        unit: (),
        yes: bool,
        small: (i8, i16, i32, i64, i128),
        unsigned: (u8, u16, u32, u64, u128),
        floats: (f32, f64),
        letter: char,
        texts: Vec<String>,
        id: uuid::Uuid,
        none: Option<i32>,
        some: Option<Inner>,
        some_list: Option<Vec<Option<u8>>>,
        list: Vec<Inner>,
        map: BTreeMap<String, i64>,
        number_keys: BTreeMap<u32, String>,
        kinds: Vec<Kind>,
        #[serde(rename = "a name with spaces")]
        renamed: u8,
        json: serde_json::Value,
    }

    fn everything(n: i64) -> Everything {
        let text = |len: usize| "é".repeat(len / 2) + &"x".repeat(len % 2);
        Everything {
            unit: (),
            yes: n % 2 == 0,
            small: (i8::MIN, i16::MIN + n.rem_euclid(100) as i16, -33, n - 1, i128::MIN + 7),
            unsigned: (u8::MAX, 256, 65_536, u64::MAX - n as u64, u128::MAX),
            floats: (1.5, -0.1 * n as f64),
            letter: 'ß',
            texts: [0, 1, 31, 32, 255, 256, 65_535, 65_536].into_iter().map(text).collect(),
            id: uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef_u128.wrapping_add(n as u128)),
            none: None,
            some: Some(Inner { name: "inner".into(), at: -n }),
            some_list: Some(vec![None, Some(1)]),
            list: (0..20).map(|i| Inner { name: format!("n{i}"), at: i * n }).collect(),
            map: (0..20).map(|i| (format!("k{i}"), i - 10)).collect(),
            number_keys: [(1, "one".into()), (70_000, "many".into())].into(),
            kinds: vec![
                Kind::Unit,
                Kind::Newtype(-n as i32),
                Kind::Tuple(7, "t".into()),
                Kind::Struct { a: Some(true), b: vec![1, 300] },
            ],
            renamed: 42,
            json: serde_json::json!({"a": [1, -2, 3.5, null, true, "s"], "b": {"c": {}}, "u": u64::MAX}),
        }
    }

    /// Both encodings rmp-serde writes, named and positional.
    fn encodings<T: Serialize>(value: &T) -> [Vec<u8>; 2] {
        [rmp_serde::to_vec_named(value).unwrap(), rmp_serde::to_vec(value).unwrap()]
    }

    fn reads_as_rmp_serde_reads<T: Serialize + for<'de> Deserialize<'de> + PartialEq + Debug>(value: &T) {
        for bytes in encodings(value) {
            let ours: T = from_slice(&bytes).unwrap();
            // Compared without `assert_eq!`, whose message would print the long texts in full.
            assert!(&ours == value, "read back differently");
            assert!(ours == rmp_serde::from_slice::<T>(&bytes).unwrap(), "read differently from rmp-serde");
        }
    }

    #[test]
    fn every_kind_of_value_reads_back_as_written_and_as_rmp_serde_reads_it() {
        for n in [0, 1, 127, 128, 40_000, -5] {
            reads_as_rmp_serde_reads(&everything(n));
        }
        reads_as_rmp_serde_reads(&Kind::Unit);
        reads_as_rmp_serde_reads(&vec![Some(1u8), None]);
        reads_as_rmp_serde_reads(&serde_json::json!([{"deep": [[[]]]}, -1, 1e300]));
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Before {
        title: String,
        pages: u32,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct After {
        title: String,
        pages: u32,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        kind: Option<Kind>,
    }

    #[test]
    fn fields_added_later_read_as_their_default_and_unknown_fields_are_skipped() {
        for bytes in encodings(&Before { title: "q3".into(), pages: 4 }) {
            let after: After = from_slice(&bytes).unwrap();
            assert_eq!(after, After { title: "q3".into(), pages: 4, tags: vec![], kind: None });
        }
        let newer =
            After { title: "q4".into(), pages: 1, tags: vec!["x".into()], kind: Some(Kind::Tuple(1, "y".into())) };
        let named = rmp_serde::to_vec_named(&newer).unwrap();
        assert_eq!(from_slice::<Before>(&named).unwrap(), Before { title: "q4".into(), pages: 1 });
        // A positional record longer than the struct is refused, as rmp-serde refuses it.
        let positional = rmp_serde::to_vec(&newer).unwrap();
        assert!(from_slice::<Before>(&positional).is_err());
        assert!(rmp_serde::from_slice::<Before>(&positional).is_err());
    }

    #[test]
    fn damaged_bytes_are_refused_without_a_panic() {
        let mut value = everything(3);
        value.texts.truncate(4);
        for bytes in encodings(&value) {
            for end in 0..bytes.len() {
                assert!(from_slice::<Everything>(&bytes[..end]).is_err(), "a record cut at {end} read");
            }
        }
        // Text that is not UTF-8, as a value: refused; as a field name: an unknown field.
        let mut bytes = rmp_serde::to_vec_named(&Inner { name: "abc".into(), at: 1 }).unwrap();
        let at = bytes.windows(3).position(|w| w == b"abc").unwrap();
        bytes[at] = 0xff;
        assert!(from_slice::<Inner>(&bytes).is_err());
        let mut bytes =
            rmp_serde::to_vec_named(&After { title: "t".into(), pages: 2, tags: vec![], kind: None }).unwrap();
        let at = bytes.windows(4).position(|w| w == b"tags").unwrap();
        bytes[at] = 0xff;
        assert_eq!(from_slice::<After>(&bytes).unwrap().pages, 2);
        // An extension type and the unused marker.
        assert!(from_slice::<serde_json::Value>(&[0xd4, 1, 2]).is_err());
        assert!(from_slice::<serde_json::Value>(&[0xc1]).is_err());
        // Nesting past the limit is refused before it can exhaust the stack.
        let deep = [vec![0x91; 100_000], vec![0xc0]].concat();
        assert!(from_slice::<serde_json::Value>(&deep).is_err());
        assert!(from_slice::<serde::de::IgnoredAny>(&deep).is_err());
    }
}
