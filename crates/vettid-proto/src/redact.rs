//! Redacted `Debug` from one place: an operation or reply prints only its variant's name,
//! read off its `Serialize` impl, so a new variant needs no new arm and no field (PIN,
//! verifier, event key, item content) can reach a log through `{:?}`.

use serde::Serialize;
use serde::ser::{self, Impossible};

/// The name of `value`'s enum variant (`"?"` if it is not an enum).
pub fn variant_name<T: Serialize + ?Sized>(value: &T) -> &'static str {
    match value.serialize(VariantName) {
        Err(Stop::Variant(name)) => name,
        _ => "?",
    }
}

/// Writes `value`'s variant name and nothing else: the body of the redacted `Debug` impls.
pub fn debug_variant<T: Serialize + ?Sized>(
    value: &T,
    f: &mut std::fmt::Formatter<'_>,
) -> std::fmt::Result {
    f.write_str(variant_name(value))
}

/// Implements `Debug` as [`debug_variant`] for the listed types.
macro_rules! redacted_debug {
    ($($ty:ty),+ $(,)?) => {$(
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                $crate::redact::debug_variant(self, f)
            }
        }
    )+};
}
pub(crate) use redacted_debug;

/// A serializer that stops at the first enum variant, returning its name through the error
/// channel (tuple and struct variants must otherwise return a field serializer); every other
/// shape is [`Stop::NotAnEnum`].
struct VariantName;

#[derive(Debug)]
enum Stop {
    Variant(&'static str),
    NotAnEnum,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("variant name")
    }
}

impl std::error::Error for Stop {}

impl ser::Error for Stop {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Stop::NotAnEnum
    }
}

type Never = Impossible<(), Stop>;

macro_rules! not_an_enum {
    ($($method:ident($($arg:ty),*)),+ $(,)?) => {$(
        fn $method(self, $(_: $arg),*) -> Result<(), Stop> {
            Err(Stop::NotAnEnum)
        }
    )+};
}

impl ser::Serializer for VariantName {
    type Ok = ();
    type Error = Stop;
    type SerializeSeq = Never;
    type SerializeTuple = Never;
    type SerializeTupleStruct = Never;
    type SerializeTupleVariant = Never;
    type SerializeMap = Never;
    type SerializeStruct = Never;
    type SerializeStructVariant = Never;

    fn serialize_unit_variant(self, _: &'static str, _: u32, v: &'static str) -> Result<(), Stop> {
        Err(Stop::Variant(v))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
        _: &T,
    ) -> Result<(), Stop> {
        Err(Stop::Variant(v))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
        _: usize,
    ) -> Result<Never, Stop> {
        Err(Stop::Variant(v))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
        _: usize,
    ) -> Result<Never, Stop> {
        Err(Stop::Variant(v))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        value.serialize(self)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Stop> {
        Err(Stop::NotAnEnum)
    }

    not_an_enum!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
    );

    fn serialize_seq(self, _: Option<usize>) -> Result<Never, Stop> {
        Err(Stop::NotAnEnum)
    }
    fn serialize_tuple(self, _: usize) -> Result<Never, Stop> {
        Err(Stop::NotAnEnum)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Never, Stop> {
        Err(Stop::NotAnEnum)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Never, Stop> {
        Err(Stop::NotAnEnum)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Never, Stop> {
        Err(Stop::NotAnEnum)
    }
}

/// Bytes shown as lowercase hex in `Debug` output (ids, never secrets).
pub struct Hex<'a>(pub &'a [u8]);

impl std::fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    enum E {
        Unit,
        New(u8),
        Tuple(u8, u8),
        Struct { pin: Vec<u8> },
    }

    #[test]
    fn every_variant_shape_gives_its_name_and_nothing_else() {
        assert_eq!(variant_name(&E::Unit), "Unit");
        assert_eq!(variant_name(&E::New(7)), "New");
        assert_eq!(variant_name(&E::Tuple(1, 2)), "Tuple");
        assert_eq!(variant_name(&E::Struct { pin: vec![9] }), "Struct");
        assert_eq!(variant_name(&7u8), "?");
    }
}
