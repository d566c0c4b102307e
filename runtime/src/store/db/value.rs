//! Values bound to statements and read from rows: the types both databases share.

/// A value's type, kept by a NULL so PostgreSQL is told what it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Float,
    Text,
    Blob,
    Bool,
}

/// One bound or read value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null(Kind),
    Int(i64),
    Float(f64),
    Text(String),
    Blob(Vec<u8>),
    Bool(bool),
}

impl Value {
    fn found(&self) -> &'static str {
        match self {
            Value::Null(_) => "NULL",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Text(_) => "text",
            Value::Blob(_) => "a blob",
            Value::Bool(_) => "a boolean",
        }
    }
}

/// What can be bound to a placeholder.
pub(crate) trait Encode {
    const KIND: Kind;
    fn encode(self) -> Value;
}

/// What a column can be read as.
pub(crate) trait Decode: Sized {
    fn decode(v: &Value) -> Result<Self, String>;
}

fn mismatch<T>(want: &str, v: &Value) -> Result<T, String> {
    Err(format!("expected {want}, found {}", v.found()))
}

macro_rules! encode_as {
    ($kind:ident: $($t:ty => |$v:ident| $e:expr),* $(,)?) => {$(
        impl Encode for $t {
            const KIND: Kind = Kind::$kind;
            fn encode(self) -> Value {
                let $v = self;
                Value::$kind($e)
            }
        }
    )*};
}

encode_as!(Int: i64 => |v| v, i32 => |v| v.into(), u32 => |v| v.into(), u8 => |v| v.into());
encode_as!(Float: f64 => |v| v);
encode_as!(Bool: bool => |v| v);
encode_as!(Text: String => |v| v, &str => |v| v.to_owned(), &String => |v| v.clone());
encode_as!(Blob: Vec<u8> => |v| v, &[u8] => |v| v.to_vec());

impl<T: Encode> Encode for Option<T> {
    const KIND: Kind = T::KIND;
    fn encode(self) -> Value {
        match self {
            Some(v) => v.encode(),
            None => Value::Null(T::KIND),
        }
    }
}

impl Decode for i64 {
    fn decode(v: &Value) -> Result<Self, String> {
        match v {
            Value::Int(i) => Ok(*i),
            Value::Bool(b) => Ok(i64::from(*b)),
            v => mismatch("an integer", v),
        }
    }
}

impl Decode for i32 {
    fn decode(v: &Value) -> Result<Self, String> {
        let i = i64::decode(v)?;
        i32::try_from(i).map_err(|_| format!("{i} does not fit a 32-bit integer"))
    }
}

impl Decode for f64 {
    fn decode(v: &Value) -> Result<Self, String> {
        match v {
            Value::Float(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            v => mismatch("a number", v),
        }
    }
}

impl Decode for bool {
    fn decode(v: &Value) -> Result<Self, String> {
        match v {
            Value::Bool(b) => Ok(*b),
            Value::Int(i) => Ok(*i != 0),
            v => mismatch("a boolean", v),
        }
    }
}

impl Decode for String {
    fn decode(v: &Value) -> Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            v => mismatch("text", v),
        }
    }
}

impl Decode for Vec<u8> {
    fn decode(v: &Value) -> Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            Value::Text(s) => Ok(s.as_bytes().to_vec()),
            v => mismatch("a blob", v),
        }
    }
}

impl<T: Decode> Decode for Option<T> {
    fn decode(v: &Value) -> Result<Self, String> {
        match v {
            Value::Null(_) => Ok(None),
            v => T::decode(v).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_keeps_its_kind_and_decodes_as_none() {
        assert_eq!(None::<i64>.encode(), Value::Null(Kind::Int));
        assert_eq!(Option::<i64>::decode(&Value::Null(Kind::Text)), Ok(None));
        assert!(i64::decode(&Value::Null(Kind::Int))
            .unwrap_err()
            .contains("found NULL"));
        assert_eq!(bool::decode(&Value::Int(1)), Ok(true));
        assert!(String::decode(&Value::Int(1)).unwrap_err().contains("text"));
    }
}
