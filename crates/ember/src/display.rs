//! How `print` shows elements: Scala's `toString`, so output reads as Spark's does.

/// Formats a value the way Spark Streaming's `print` shows it.
///
/// Tuples print as Scala tuples (`(hello,1)`), strings without quotes, `Option` as
/// `Some(x)`/`None`, floats as Scala doubles (`1.0`), and `Vec` as `[a, b]`. Implement it for
/// your own types (often via [`impl_spark_display_via_display!`](crate::impl_spark_display_via_display)),
/// or `map` to a `String` before printing.
pub trait SparkDisplay {
    /// Appends the Spark form of `self` to `out`.
    fn fmt_spark(&self, out: &mut String);

    /// The Spark form of `self`.
    fn to_spark_string(&self) -> String {
        let mut s = String::new();
        self.fmt_spark(&mut s);
        s
    }
}

/// Implements [`SparkDisplay`] for types whose `Display` is already what `print` should show.
#[macro_export]
macro_rules! impl_spark_display_via_display {
    ($($t:ty),* $(,)?) => {
        $(impl $crate::SparkDisplay for $t {
            fn fmt_spark(&self, out: &mut String) {
                use std::fmt::Write as _;
                let _ = write!(out, "{}", self);
            }
        })*
    };
}

impl_spark_display_via_display!(
    i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, bool, char, str, String
);

macro_rules! float_display {
    ($($t:ty),*) => {
        $(impl SparkDisplay for $t {
            fn fmt_spark(&self, out: &mut String) {
                use std::fmt::Write as _;
                if self.is_finite() && self.fract() == 0.0 && self.abs() < 1e7 {
                    let _ = write!(out, "{:.1}", self);
                } else if self.is_nan() {
                    out.push_str("NaN");
                } else if self.is_infinite() {
                    out.push_str(if *self > 0.0 { "Infinity" } else { "-Infinity" });
                } else {
                    let _ = write!(out, "{}", self);
                }
            }
        })*
    };
}
float_display!(f32, f64);

impl<T: SparkDisplay + ?Sized> SparkDisplay for &T {
    fn fmt_spark(&self, out: &mut String) {
        (**self).fmt_spark(out)
    }
}

impl<T: SparkDisplay> SparkDisplay for Option<T> {
    fn fmt_spark(&self, out: &mut String) {
        match self {
            Some(x) => {
                out.push_str("Some(");
                x.fmt_spark(out);
                out.push(')');
            }
            None => out.push_str("None"),
        }
    }
}

impl<T: SparkDisplay> SparkDisplay for Vec<T> {
    fn fmt_spark(&self, out: &mut String) {
        out.push('[');
        for (i, x) in self.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            x.fmt_spark(out);
        }
        out.push(']');
    }
}

macro_rules! tuple_display {
    ($($name:ident),+) => {
        impl<$($name: SparkDisplay),+> SparkDisplay for ($($name,)+) {
            #[allow(non_snake_case)]
            fn fmt_spark(&self, out: &mut String) {
                let ($($name,)+) = self;
                out.push('(');
                let mut first = true;
                $(
                    if !first { out.push(','); }
                    first = false;
                    $name.fmt_spark(out);
                )+
                let _ = first;
                out.push(')');
            }
        }
    };
}
tuple_display!(A);
tuple_display!(A, B);
tuple_display!(A, B, C);
tuple_display!(A, B, C, D);
tuple_display!(A, B, C, D, E);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scala_forms() {
        assert_eq!(("hello".to_owned(), 1u64).to_spark_string(), "(hello,1)");
        assert_eq!((1, (2.0f64, "x")).to_spark_string(), "(1,(2.0,x))");
        assert_eq!(Some(3).to_spark_string(), "Some(3)");
        assert_eq!(vec![1, 2].to_spark_string(), "[1, 2]");
        assert_eq!(0.5f64.to_spark_string(), "0.5");
    }
}
