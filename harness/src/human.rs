//! Figures as people read them, for every report and the terminal: bytes in
//! kB, MB and GB, counts with thousands separators, milliseconds, shares in
//! percent, and small or large numbers with three significant digits.

/// `837.8 kB`, `46.0 MB`: decimal units, as the size checks state them.
pub fn bytes(bytes: f64) -> String {
    const UNITS: [(&str, f64); 3] = [("GB", 1e9), ("MB", 1e6), ("kB", 1e3)];
    for (unit, size) in UNITS {
        if bytes.abs() >= size {
            return format!("{:.1} {unit}", bytes / size);
        }
    }
    format!("{} B", count(bytes))
}

/// `1,324`; a figure that is not a whole number is shown as [`number`].
pub fn count(n: f64) -> String {
    if n.fract() != 0.0 || n.abs() >= 1e15 {
        return number(n);
    }
    let digits = format!("{}", n.abs() as u64);
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0.0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Three significant digits: `3.78`, `0.0421`, `2.21e-5`, `4.86e7`.
pub fn number(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let magnitude = x.abs().log10().floor() as i32;
    if !(-3..6).contains(&magnitude) {
        return format!("{x:.2e}");
    }
    let decimals = (2 - magnitude).max(0) as usize;
    let text = format!("{x:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// `0.28 ms`, `12.4 ms`, `1.25 s`.
pub fn ms(ms: f64) -> String {
    if ms.abs() >= 1000.0 {
        format!("{} s", number(ms / 1000.0))
    } else {
        format!("{} ms", number(ms))
    }
}

/// A share as a percentage: `0.5%`, `12%`.
pub fn percent(share: f64) -> String {
    format!("{}%", number(share * 100.0))
}

/// A relative change as a signed percentage: `+12.3%`, `-0.4%`.
pub fn change(relative: f64) -> String {
    format!("{:+.1}%", relative * 100.0)
}

/// A figure of a suite's metrics, by the convention of its name: `_bytes`
/// in bytes, `_ms` in milliseconds, `_rate` as a share, counts as counts.
pub fn metric(name: &str, value: f64) -> String {
    if name.ends_with("_bytes") {
        bytes(value)
    } else if name.ends_with("_ms") {
        ms(value)
    } else if name.ends_with("_rate") {
        percent(value)
    } else if ["requests", "rounds"].contains(&name)
        || name.ends_with("_passed")
        || name.ends_with("_retries")
    {
        count(value)
    } else {
        number(value)
    }
}

/// The noun for `n` things: `1 model`, `300 models`.
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{} {noun}s", count(n as f64))
    }
}

/// The text cut at a word boundary to about `most` characters, with `…`.
pub fn clip(text: &str, most: usize) -> String {
    if text.chars().count() <= most {
        return text.to_owned();
    }
    let cut: String = text.chars().take(most).collect();
    let cut = cut.rfind(' ').map_or(cut.as_str(), |at| &cut[..at]);
    format!("{}…", cut.trim_end_matches([',', ';', ':']))
}

/// A time given as seconds since the Unix epoch (`started_at`), as a
/// timestamp in UTC.
pub fn timestamp(epoch_seconds: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(epoch_seconds.parse().ok()?, 0)
}

/// A time given as seconds since the Unix epoch (`started_at`), in UTC:
/// `2026-11-27 04:31 UTC`; the text as it is when it is not such a time.
pub fn date(epoch_seconds: &str) -> String {
    timestamp(epoch_seconds).map_or_else(
        || epoch_seconds.to_owned(),
        |d| d.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(bytes(48_560_000.0), "48.6 MB");
        assert_eq!(bytes(837_797.0), "837.8 kB");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(count(500.0), "500");
        assert_eq!(count(1_324_000.0), "1,324,000");
        assert_eq!(count(-1234.0), "-1,234");
        assert_eq!(number(2.2131e-5), "2.21e-5");
        assert_eq!(number(3.7767), "3.78");
        assert_eq!(number(0.0421), "0.0421");
        assert_eq!(number(250.0), "250");
        assert_eq!(number(48_560_000.0), "4.86e7");
        assert_eq!(ms(0.2832), "0.283 ms");
        assert_eq!(ms(1250.0), "1.25 s");
        assert_eq!(percent(0.005), "0.5%");
        assert_eq!(change(0.1234), "+12.3%");
        assert_eq!(metric("batch_passed", 500.0), "500");
        assert_eq!(metric("model_bytes", 837_797.0), "837.8 kB");
        assert_eq!(plural(1, "model"), "1 model");
        assert_eq!(plural(300, "model"), "300 models");
        assert_eq!(date("1764217860"), "2025-11-27 04:31 UTC");
        assert_eq!(date("soon"), "soon");
        assert_eq!(clip("one two three", 9), "one two…");
        assert_eq!(clip("short", 9), "short");
    }
}
