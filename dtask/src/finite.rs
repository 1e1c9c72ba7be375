//! Refuses values JSON cannot carry. serde_json writes a NaN or an infinite float as `null`,
//! which then does not decode as a number: a job enqueued with one would be dead on arrival, and
//! a result holding one could not be read. [`check`] walks a value once, writing nothing, and
//! names the first such float.

use serde::Serialize;
use serde::ser::{self, Error as _};

/// Fails when `value` holds a NaN or infinite `f32`/`f64`, anywhere inside it.
pub(crate) fn check<T: Serialize + ?Sized>(value: &T) -> Result<(), serde_json::Error> {
    value.serialize(FiniteCheck)
}

/// A serializer that writes nothing and fails on a non-finite float.
struct FiniteCheck;

fn float(value: f64) -> Result<(), serde_json::Error> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(serde_json::Error::custom(format!(
            "{value} cannot travel in JSON (it would arrive as null); send a finite number, or an Option that is None"
        )))
    }
}

/// Methods that accept their value as it is.
macro_rules! accept {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method(self, _: $ty) -> Result<(), serde_json::Error> {
                Ok(())
            }
        )*
    };
}

impl ser::Serializer for FiniteCheck {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    accept!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_f32(self, value: f32) -> Result<(), serde_json::Error> {
        float(f64::from(value))
    }

    fn serialize_f64(self, value: f64) -> Result<(), serde_json::Error> {
        float(value)
    }

    fn serialize_none(self) -> Result<(), serde_json::Error> {
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), serde_json::Error> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), serde_json::Error> {
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), serde_json::Error> {
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        value.serialize(self)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self, serde_json::Error> {
        Ok(self)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self, serde_json::Error> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, serde_json::Error> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, serde_json::Error> {
        Ok(self)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self, serde_json::Error> {
        Ok(self)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, serde_json::Error> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, serde_json::Error> {
        Ok(self)
    }
}

/// The compound serializers: each element is checked in turn.
macro_rules! elements {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(
            impl ser::$trait for FiniteCheck {
                type Ok = ();
                type Error = serde_json::Error;

                fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), serde_json::Error> {
                    value.serialize(FiniteCheck)
                }

                fn end(self) -> Result<(), serde_json::Error> {
                    Ok(())
                }
            }
        )*
    };
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl ser::SerializeMap for FiniteCheck {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), serde_json::Error> {
        key.serialize(FiniteCheck)
    }

    fn serialize_value<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        value.serialize(FiniteCheck)
    }

    fn end(self) -> Result<(), serde_json::Error> {
        Ok(())
    }
}

/// Structs and struct variants: each field is checked in turn.
macro_rules! fields {
    ($($trait:ident),* $(,)?) => {
        $(
            impl ser::$trait for FiniteCheck {
                type Ok = ();
                type Error = serde_json::Error;

                fn serialize_field<T: Serialize + ?Sized>(
                    &mut self,
                    _: &'static str,
                    value: &T,
                ) -> Result<(), serde_json::Error> {
                    value.serialize(FiniteCheck)
                }

                fn end(self) -> Result<(), serde_json::Error> {
                    Ok(())
                }
            }
        )*
    };
}

fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::check;

    #[derive(serde::Serialize)]
    struct Reading {
        label: String,
        values: Vec<Option<f64>>,
    }

    #[test]
    fn finite_values_pass_and_a_nan_or_infinity_anywhere_is_named() {
        assert!(check(&(1.5f64, "x", vec![1u8], None::<f32>)).is_ok());
        assert!(check(&f64::MAX).is_ok());
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let error = check(&(1u32, bad)).unwrap_err().to_string();
            assert!(error.contains("cannot travel in JSON"), "{error}");
        }
        let nested = Reading {
            label: "t".into(),
            values: vec![Some(1.0), Some(f64::NAN)],
        };
        assert!(check(&nested).unwrap_err().to_string().contains("NaN"));
        let mut map = BTreeMap::new();
        map.insert("k", f32::INFINITY);
        assert!(check(&map).unwrap_err().to_string().contains("inf"));
    }
}
