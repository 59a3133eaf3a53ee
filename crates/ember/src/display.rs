//! How `print` shows elements: Scala's `toString`, so output reads as Spark's does.

/// Formats a value the way Spark Streaming's `print` shows it.
///
/// Tuples print as Scala tuples (`(hello,1)`), strings without quotes, `Option` as
/// `Some(x)`/`None`, floats as Scala's `Double.toString` does (`1.0`, `1.0E7`, `NaN`), and `Vec`
/// as `[a, b]`. Implement it for your own types (often via
/// [`impl_spark_display_via_display!`](crate::impl_spark_display_via_display)), or `map` to a
/// `String` before printing.
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

/// Implements [`SparkDisplay`] for floats as Java's `Double.toString`/`Float.toString` (JDK 19
/// and later) print them, since Scala's `toString` is Java's and `print` must read as Spark's.
///
/// Java prints the shortest decimal that reads back as the same value, the closest one if there
/// are several. Rust's `{:e}` finds the same, so the digits come from Rust (no hand-rolled
/// conversion) and only the layout is Java's (`push_java_float`). Java's selection differs in
/// two corners, handled here:
/// - A tie between the two closest (`0.400390625f32`: `0.40039062` or `0.40039063`): Java takes
///   the even last digit, Rust's shortest form rounds up. Rust's fixed-precision `{:.Ne}` rounds
///   ties to even, so when the shortest form ends in an odd digit, the value rounded to that many
///   digits is Java's choice whenever it reads back (it differs only on a tie).
/// - When one digit is enough, Java takes the closest decimal of one *or two* digits (`4.9E-324`
///   where Rust has `5e-324`). For a normal number that is the one-digit decimal anyway (two-digit
///   decimals are far apart next to its precision), so only subnormals need it; their rounding
///   interval is symmetric, so the closest two-digit decimal (`{:.1e}`) reads back too.
macro_rules! float_display {
    ($($t:ty),*) => {
        $(impl SparkDisplay for $t {
            fn fmt_spark(&self, out: &mut String) {
                use std::fmt::Write as _;
                if self.is_nan() {
                    out.push_str("NaN");
                    return;
                }
                if self.is_sign_negative() {
                    out.push('-');
                }
                let abs = self.abs();
                if abs.is_infinite() {
                    out.push_str("Infinity");
                    return;
                }
                if abs == 0.0 {
                    out.push_str("0.0");
                    return;
                }
                let mut sci = SciText::default();
                let _ = write!(sci, "{abs:e}");
                let (len, last) = sci.digits();
                if len == 1 && abs < <$t>::MIN_POSITIVE {
                    // One digit is enough: Java's closest of one or two digits.
                    sci = SciText::default();
                    let _ = write!(sci, "{abs:.1e}");
                    debug_assert_eq!(sci.as_str().parse::<$t>(), Ok(abs), "the two-digit form reads back");
                } else if last % 2 == 1 {
                    // An odd last digit may be Rust's side of a tie; an even one is Java's anyway.
                    let prec = len - 1;
                    let mut even = SciText::default();
                    let _ = write!(even, "{abs:.prec$e}");
                    if even.as_str() != sci.as_str() && even.as_str().parse::<$t>() == Ok(abs) {
                        sci = even;
                    }
                }
                push_java_float(out, sci.as_str());
            }
        })*
    };
}
float_display!(f32, f64);

/// Rust's `{:e}` text of a float, on the stack: floats print once per element (also in
/// `save_as_text_files`), so this spares an allocation each.
#[derive(Default)]
struct SciText {
    buf: [u8; 32],
    len: usize,
}

impl SciText {
    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so the bytes are UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }

    /// How many significant digits the mantissa has, and the last one's value.
    fn digits(&self) -> (usize, u8) {
        let mantissa = self.as_str().split('e').next().unwrap_or_default();
        let len = mantissa.bytes().filter(u8::is_ascii_digit).count();
        (len, mantissa.bytes().last().map_or(0, |b| b.wrapping_sub(b'0')))
    }
}

impl std::fmt::Write for SciText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        // The longest text, `2.2250738585072014e-308`, is 23 bytes; a longer one would fail the
        // write rather than panic.
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Lays out a positive finite nonzero float, given as Rust's `{:e}` text (`d[.ddd]e[-]n`), as
/// Java does: plain decimal when `1e-3 <= x < 1e7`, else computerized scientific notation
/// (`1.5E-5`), always with at least one digit after the point.
///
/// The range is decided on the chosen decimal, not the binary value, as Java's spec does.
fn push_java_float(out: &mut String, sci: &str) {
    use std::fmt::Write as _;
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (first, rest) = mantissa.split_at(1);
    // `rest` is the fraction after the point; the two-digit form can end in a zero (`1.0e23`)
    // that Java leaves out.
    let rest = rest.trim_start_matches('.').trim_end_matches('0');
    if (-3..0).contains(&exp) {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', exp.unsigned_abs() as usize - 1));
        out.push_str(first);
        out.push_str(rest);
    } else if (0..7).contains(&exp) {
        // `exp` more digits belong before the point; zeros stand in for those `rest` lacks.
        let int_rest = exp as usize;
        out.push_str(first);
        if rest.len() > int_rest {
            out.push_str(&rest[..int_rest]);
            out.push('.');
            out.push_str(&rest[int_rest..]);
        } else {
            out.push_str(rest);
            out.extend(std::iter::repeat_n('0', int_rest - rest.len()));
            out.push_str(".0");
        }
    } else {
        out.push_str(first);
        out.push('.');
        out.push_str(if rest.is_empty() { "0" } else { rest });
        let _ = write!(out, "E{exp}");
    }
}

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

    /// Java's `Double.toString` (JDK 19+), so `print` output compares byte for byte with Spark's.
    #[test]
    fn f64_as_java() {
        let cases: &[(f64, &str)] = &[
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            // Plain decimal inside [1e-3, 1e7), with at least one fraction digit.
            (1.0, "1.0"),
            (-1.0, "-1.0"),
            (100.0, "100.0"),
            (0.5, "0.5"),
            (0.1, "0.1"),
            (0.1 + 0.2, "0.30000000000000004"),
            (123.456, "123.456"),
            (-123.456, "-123.456"),
            (1234567.0, "1234567.0"),
            (1234567.5, "1234567.5"),
            (9999999.0, "9999999.0"),
            (9999999.999999998, "9999999.999999998"),
            (0.001, "0.001"),
            (-0.001, "-0.001"),
            (0.0123, "0.0123"),
            (0.002, "0.002"),
            // Scientific notation outside it: no '+', no leading zeros in the exponent.
            (1e7, "1.0E7"),
            (-1e7, "-1.0E7"),
            (12345678.0, "1.2345678E7"),
            (1e20, "1.0E20"),
            (1e21, "1.0E21"),
            (1e23, "1.0E23"),
            // JDK 18 and older printed 1e23 as 9.999999999999999E22 and 2e23 as
            // 1.9999999999999998E23, longer than needed; the double below 1e23 does need 16 digits.
            (2e23, "2.0E23"),
            (9.999999999999997e22, "9.999999999999997E22"),
            (1.23e-19, "1.23E-19"),
            (0.00099, "9.9E-4"),
            (0.000999, "9.99E-4"),
            (1e-4, "1.0E-4"),
            (1.5e-5, "1.5E-5"),
            (-1.5e-5, "-1.5E-5"),
            (f64::MAX, "1.7976931348623157E308"),
            (f64::MIN, "-1.7976931348623157E308"),
            (f64::MIN_POSITIVE, "2.2250738585072014E-308"),
            (f64::EPSILON, "2.220446049250313E-16"),
            // Exactly halfway between the two closest 17-digit decimals: Java takes the even one.
            (2020163013628192.0 + 0.25, "2.0201630136281922E15"),
            // Subnormals: where one digit reads back, Java takes the closest of one or two digits.
            (5e-324, "4.9E-324"),
            (-5e-324, "-4.9E-324"),
            (1e-323, "9.9E-324"),
            (1.5e-323, "1.5E-323"),
            (5e-323, "4.9E-323"),
            (1e-322, "9.9E-323"),
            (2.225073858507201e-308, "2.225073858507201E-308"),
        ];
        for &(x, java) in cases {
            assert_eq!(x.to_spark_string(), java, "{x:e}");
            // Each expected string names the same value: the table itself is checked.
            if !x.is_nan() {
                assert_eq!(java.parse::<f64>(), Ok(x), "{java}");
            }
        }
    }

    /// Java's `Float.toString` (JDK 19+): the same layout, with `f32`'s shortest digits.
    #[test]
    fn f32_as_java() {
        let cases: &[(f32, &str)] = &[
            (f32::NAN, "NaN"),
            (f32::NEG_INFINITY, "-Infinity"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.33333334"),
            (0.001, "0.001"),
            (0.00099, "9.9E-4"),
            (9999999.0, "9999999.0"),
            (1e7, "1.0E7"),
            (16777216.0, "1.6777216E7"),
            // Exactly halfway between the two closest 8-digit decimals: Java takes the even one.
            (205.0 / 512.0, "0.40039062"), // 0.400390625 exactly
            (-2596012.0 - 0.25, "-2596012.2"),
            (1e10, "1.0E10"),
            (-1.5e-5, "-1.5E-5"),
            (f32::MAX, "3.4028235E38"),
            // JDK 18 and older printed this as 1.17549435E-38, one digit more than needed.
            (f32::MIN_POSITIVE, "1.1754944E-38"),
            (1e-45, "1.4E-45"),
            (3e-45, "2.8E-45"),
            (1e-44, "9.8E-45"),
        ];
        for &(x, java) in cases {
            assert_eq!(x.to_spark_string(), java, "{x:e}");
            if !x.is_nan() {
                assert_eq!(java.parse::<f32>(), Ok(x), "{java}");
            }
        }
    }

    #[test]
    fn floats_inside_tuples() {
        assert_eq!(("word".to_owned(), 1.5f64).to_spark_string(), "(word,1.5)");
        assert_eq!(("big", 1e7f64, Some(-2.5e-7f32)).to_spark_string(), "(big,1.0E7,Some(-2.5E-7))");
    }
}
