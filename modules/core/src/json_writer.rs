//! Compact JSON written straight from a serde `Serialize` into a byte buffer: the same bytes as
//! `serde_json::to_writer`, but strings (every object key among them) are checked for characters to
//! escape eight bytes at a time instead of one by one, which was a tenth of a GET's instructions.
//! Numbers go through serde_json's own formatter, so they print exactly as there.

use std::fmt::{self, Display};

use serde::ser::{self, Serialize};
use serde_json::ser::{CompactFormatter, Formatter};

/// Appends `value` as compact JSON to `out`.
pub fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), WriteError> {
    value.serialize(&mut Writer { out })
}

/// Why a value could not be written (a map key that is not a string or a number, or the value's own
/// `Serialize` refusing).
#[derive(Debug)]
pub struct WriteError(String);

impl Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WriteError {}

impl ser::Error for WriteError {
    fn custom<M: Display>(message: M) -> Self {
        Self(message.to_string())
    }
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

/// serde_json's formatter writes into a `Vec`, which never fails.
fn number(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) {
    let _ = write(out);
}

/// A byte that JSON strings must escape: a control character, `"` or `\`.
fn must_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// Whether any of the eight bytes of `word` must be escaped (bytes of 0x80 and above never need it).
fn any_to_escape(word: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    (below_space | zero_byte(word ^ (ONES * u64::from(b'"'))) | zero_byte(word ^ (ONES * u64::from(b'\\')))) != 0
}

/// Whether any byte of `bytes` must be escaped, eight at a time: under eight bytes (most object keys) the
/// word is the first four and the last four, which may overlap; under four, byte by byte.
fn any_to_escape_in(bytes: &[u8]) -> bool {
    // A slice of four or eight always converts; were it not to, zeros send the string the careful way.
    let half = |part: Option<&[u8]>| u32::from_ne_bytes(part.and_then(|p| p.try_into().ok()).unwrap_or([0; 4]));
    let word = |part: Option<&[u8]>| u64::from_ne_bytes(part.and_then(|p| p.try_into().ok()).unwrap_or([0; 8]));
    let len = bytes.len();
    match len {
        0..4 => bytes.iter().any(|&byte| must_escape(byte)),
        4..8 => any_to_escape(u64::from(half(bytes.get(..4))) << 32 | u64::from(half(bytes.get(len - 4..)))),
        _ => {
            let mut chunks = bytes.chunks_exact(8);
            if chunks.by_ref().any(|chunk| any_to_escape(word(Some(chunk)))) {
                return true;
            }
            // What the whole words left over lies in the last eight bytes.
            !chunks.remainder().is_empty() && any_to_escape(word(bytes.get(len - 8..)))
        }
    }
}

fn hex_digit(n: u8) -> u8 {
    b"0123456789abcdef".get(usize::from(n)).copied().unwrap_or(b'0')
}

/// `value` as a JSON string, escaped as serde_json escapes it (short forms where JSON has them, else
/// `\u00xx`; everything from 0x7f up as it is).
fn write_str(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    match any_to_escape_in(bytes) {
        true => write_escaped(out, bytes),
        false => out.extend_from_slice(bytes),
    }
    out.push(b'"');
}

fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        if !must_escape(byte) {
            continue;
        }
        out.extend_from_slice(bytes.get(start..at).unwrap_or_default());
        let short = match byte {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            0x08 => Some(b'b'),
            0x0c => Some(b'f'),
            b'\n' => Some(b'n'),
            b'\r' => Some(b'r'),
            b'\t' => Some(b't'),
            _ => None,
        };
        match short {
            Some(letter) => out.extend_from_slice(&[b'\\', letter]),
            None => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex_digit(byte >> 4), hex_digit(byte & 0xf)]),
        }
        start = at + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
}

impl<'a, 'w> ser::Serializer for &'w mut Writer<'a> {
    type Ok = ();
    type Error = WriteError;
    type SerializeSeq = Compound<'a, 'w>;
    type SerializeTuple = Compound<'a, 'w>;
    type SerializeTupleStruct = Compound<'a, 'w>;
    type SerializeTupleVariant = Compound<'a, 'w>;
    type SerializeMap = Compound<'a, 'w>;
    type SerializeStruct = Compound<'a, 'w>;
    type SerializeStructVariant = Compound<'a, 'w>;

    fn serialize_bool(self, v: bool) -> Result<(), WriteError> {
        self.out.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), WriteError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), WriteError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), WriteError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), WriteError> {
        number(self.out, |out| CompactFormatter.write_i64(out, v));
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), WriteError> {
        number(self.out, |out| CompactFormatter.write_i128(out, v));
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), WriteError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), WriteError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), WriteError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), WriteError> {
        number(self.out, |out| CompactFormatter.write_u64(out, v));
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), WriteError> {
        number(self.out, |out| CompactFormatter.write_u128(out, v));
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), WriteError> {
        match v.is_finite() {
            true => number(self.out, |out| CompactFormatter.write_f32(out, v)),
            false => self.out.extend_from_slice(b"null"),
        }
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), WriteError> {
        match v.is_finite() {
            true => number(self.out, |out| CompactFormatter.write_f64(out, v)),
            false => self.out.extend_from_slice(b"null"),
        }
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), WriteError> {
        write_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), WriteError> {
        write_str(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), WriteError> {
        use ser::SerializeSeq;
        let mut seq = self.serialize_seq(Some(v.len()))?;
        for byte in v {
            seq.serialize_element(byte)?;
        }
        seq.end()
    }
    fn serialize_none(self) -> Result<(), WriteError> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), WriteError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), WriteError> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), WriteError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> Result<(), WriteError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _name: &'static str, value: &T) -> Result<(), WriteError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), WriteError> {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a, 'w>, WriteError> {
        self.out.push(b'[');
        Ok(Compound { writer: self, first: true, close: b"]" })
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a, 'w>, WriteError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Compound<'a, 'w>, WriteError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'w>, WriteError> {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.extend_from_slice(b":[");
        Ok(Compound { writer: self, first: true, close: b"]}" })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a, 'w>, WriteError> {
        self.out.push(b'{');
        Ok(Compound { writer: self, first: true, close: b"}" })
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Compound<'a, 'w>, WriteError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'w>, WriteError> {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.extend_from_slice(b":{");
        Ok(Compound { writer: self, first: true, close: b"}}" })
    }
}

/// An array or object being written: a comma before every element but the first, `close` at the end.
pub struct Compound<'a, 'w> {
    writer: &'w mut Writer<'a>,
    first: bool,
    close: &'static [u8],
}

impl Compound<'_, '_> {
    fn comma(&mut self) {
        if !std::mem::take(&mut self.first) {
            self.writer.out.push(b',');
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        self.comma();
        value.serialize(&mut *self.writer)
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), WriteError> {
        self.comma();
        write_str(self.writer.out, key);
        self.writer.out.push(b':');
        value.serialize(&mut *self.writer)
    }

    fn end(self) -> Result<(), WriteError> {
        self.writer.out.extend_from_slice(self.close);
        Ok(())
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        self.element(value)
    }
    fn end(self) -> Result<(), WriteError> {
        Compound::end(self)
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        self.element(value)
    }
    fn end(self) -> Result<(), WriteError> {
        Compound::end(self)
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        self.element(value)
    }
    fn end(self) -> Result<(), WriteError> {
        Compound::end(self)
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        self.element(value)
    }
    fn end(self) -> Result<(), WriteError> {
        Compound::end(self)
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), WriteError> {
        self.comma();
        key.serialize(MapKey { out: self.writer.out })?;
        self.writer.out.push(b':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        value.serialize(&mut *self.writer)
    }
    fn end(self) -> Result<(), WriteError> {
        Compound::end(self)
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), WriteError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), WriteError> {
        Compound::end(self)
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), WriteError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), WriteError> {
        Compound::end(self)
    }
}

/// An object's key: a string, or a number, a `bool` or a unit variant written as one (as serde_json
/// does); anything else is refused.
struct MapKey<'a> {
    out: &'a mut Vec<u8>,
}

impl MapKey<'_> {
    fn quoted(self, write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> Result<(), WriteError> {
        self.out.push(b'"');
        number(self.out, write);
        self.out.push(b'"');
        Ok(())
    }
}

fn key_refused() -> WriteError {
    WriteError("an object key must be a string".into())
}

impl ser::Serializer for MapKey<'_> {
    type Ok = ();
    type Error = WriteError;
    type SerializeSeq = ser::Impossible<(), WriteError>;
    type SerializeTuple = ser::Impossible<(), WriteError>;
    type SerializeTupleStruct = ser::Impossible<(), WriteError>;
    type SerializeTupleVariant = ser::Impossible<(), WriteError>;
    type SerializeMap = ser::Impossible<(), WriteError>;
    type SerializeStruct = ser::Impossible<(), WriteError>;
    type SerializeStructVariant = ser::Impossible<(), WriteError>;

    fn serialize_str(self, v: &str) -> Result<(), WriteError> {
        write_str(self.out, v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), WriteError> {
        write_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> Result<(), WriteError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _name: &'static str, value: &T) -> Result<(), WriteError> {
        value.serialize(self)
    }
    fn serialize_bool(self, v: bool) -> Result<(), WriteError> {
        self.serialize_str(if v { "true" } else { "false" })
    }
    fn serialize_i8(self, v: i8) -> Result<(), WriteError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), WriteError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), WriteError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), WriteError> {
        self.quoted(|out| CompactFormatter.write_i64(out, v))
    }
    fn serialize_i128(self, v: i128) -> Result<(), WriteError> {
        self.quoted(|out| CompactFormatter.write_i128(out, v))
    }
    fn serialize_u8(self, v: u8) -> Result<(), WriteError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), WriteError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), WriteError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), WriteError> {
        self.quoted(|out| CompactFormatter.write_u64(out, v))
    }
    fn serialize_u128(self, v: u128) -> Result<(), WriteError> {
        self.quoted(|out| CompactFormatter.write_u128(out, v))
    }
    fn serialize_f32(self, _v: f32) -> Result<(), WriteError> {
        Err(key_refused())
    }
    fn serialize_f64(self, _v: f64) -> Result<(), WriteError> {
        Err(key_refused())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<(), WriteError> {
        Err(key_refused())
    }
    fn serialize_none(self) -> Result<(), WriteError> {
        Err(key_refused())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<(), WriteError> {
        Err(key_refused())
    }
    fn serialize_unit(self) -> Result<(), WriteError> {
        Err(key_refused())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), WriteError> {
        Err(key_refused())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), WriteError> {
        Err(key_refused())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, WriteError> {
        Err(key_refused())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, WriteError> {
        Err(key_refused())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, WriteError> {
        Err(key_refused())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, WriteError> {
        Err(key_refused())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, WriteError> {
        Err(key_refused())
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeStruct, WriteError> {
        Err(key_refused())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, WriteError> {
        Err(key_refused())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;
    use serde_json::json;

    fn same_as_serde_json<T: Serialize + ?Sized>(value: &T) {
        let mut ours = Vec::new();
        super::write(&mut ours, value).unwrap();
        assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(value).unwrap());
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        // Every ASCII character, alone and at each place around and across eight-byte words.
        for byte in 0u8..0x80 {
            let c = char::from(byte);
            for before in 0..18 {
                for after in [0, 1, 7, 8, 9, 15, 16, 17] {
                    same_as_serde_json(&format!("{}{c}{}", "a".repeat(before), "b".repeat(after)));
                }
            }
        }
        for text in ["", "\u{7f}", "é\"ü\n€", "𝄞\\𝄞", "\u{1}\u{1f}\u{20}", "a\u{0}b\u{0}c\u{0}d\u{0}e", "\u{2028}"]
        {
            same_as_serde_json(text);
        }
        same_as_serde_json(&"long words without anything to escape, then a \"quote\" and\ttabs".repeat(5));
    }

    #[derive(Serialize)]
    enum Kind {
        Unit,
        Newtype(u8),
        Tuple(i8, String),
        Struct { a: Option<bool>, b: () },
    }

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Newtype(f32);

    #[derive(Serialize)]
    struct Everything {
        flag: bool,
        small: i8,
        negative: i64,
        big: u64,
        wide: i128,
        wider: u128,
        money: f64,
        not_finite: f64,
        nothing: Option<u8>,
        letter: char,
        bytes: serde_bytes_like::Bytes,
        kinds: Vec<Kind>,
        pair: (u8, &'static str),
        unit: Unit,
        newtype: Newtype,
        by_number: BTreeMap<u32, &'static str>,
        by_word: BTreeMap<String, Vec<u8>>,
        #[serde(flatten)]
        extra: BTreeMap<&'static str, serde_json::Value>,
    }

    mod serde_bytes_like {
        /// Serialized as serde bytes (an array of numbers in JSON).
        pub struct Bytes(pub Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }

    #[test]
    fn every_kind_of_value_is_written_as_serde_json_writes_it() {
        let value = Everything {
            flag: true,
            small: -8,
            negative: i64::MIN,
            big: u64::MAX,
            wide: i128::MIN,
            wider: u128::MAX,
            money: 1487.5,
            not_finite: f64::NAN,
            nothing: None,
            letter: '"',
            bytes: serde_bytes_like::Bytes(vec![0, 255]),
            kinds: vec![
                Kind::Unit,
                Kind::Newtype(7),
                Kind::Tuple(-1, "x".into()),
                Kind::Struct { a: Some(false), b: () },
            ],
            pair: (1, "one"),
            unit: Unit,
            newtype: Newtype(0.1),
            by_number: BTreeMap::from([(1, "a"), (20, "b")]),
            by_word: BTreeMap::from([("k\"ey".into(), vec![]), ("z".into(), vec![1, 2])]),
            extra: BTreeMap::from([("value", json!({"n": [1.0, -0.0, 1e300], "s": "\u{8}", "t": null}))]),
        };
        same_as_serde_json(&value);
        same_as_serde_json(&f64::INFINITY);
        same_as_serde_json(&Vec::<u8>::new());
        same_as_serde_json(&BTreeMap::<u8, u8>::new());
    }

    #[test]
    fn a_key_that_is_not_a_string_or_number_is_refused() {
        let mut out = Vec::new();
        let refused = super::write(&mut out, &BTreeMap::from([(vec![1u8], 1u8)])).unwrap_err();
        assert_eq!(refused.to_string(), "an object key must be a string");
    }
}
