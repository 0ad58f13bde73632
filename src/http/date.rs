//! The `Date` field (RFC 9110 §6.6.1): every response ferry writes carries
//! one, in IMF-fixdate form (`Sun, 06 Nov 1994 08:49:37 GMT`).
//!
//! Formatting a date per response would cost a division chain and a
//! `write!` per request; [`HttpDate`] keeps the text of the current second
//! and the event loop refreshes it once per loop turn, so a response only
//! copies 29 bytes.
//!
//! In the course (docs/learn): chapter 7, "The order": sans-IO HTTP, bytes in
//! and meaning out.

use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate.
pub const LEN: usize = 29;

/// The current second as an IMF-fixdate, re-formatted when the second
/// changes.
#[derive(Clone, Debug)]
pub struct HttpDate {
    second: u64,
    text: [u8; LEN],
}

impl Default for HttpDate {
    fn default() -> HttpDate {
        let mut date = HttpDate {
            second: 0,
            text: [0; LEN],
        };
        date.text = format_imf(0);
        date
    }
}

impl HttpDate {
    /// Moves to `now`'s second; formats only when the second changed.
    pub fn update(&mut self, now: SystemTime) {
        let second = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if second != self.second {
            self.second = second;
            self.text = format_imf(second);
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.text
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` for a Unix time in seconds.
pub fn format_imf(second: u64) -> [u8; LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = second / 86_400;
    let rem = second % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    // 1970-01-01 was a Thursday.
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    two_digits(&mut out[5..7], u64::from(day));
    out[8..11].copy_from_slice(MONTHS[(month as usize).clamp(1, 12) - 1]);
    let year = year.clamp(0, 9999) as u64;
    two_digits(&mut out[12..14], year / 100);
    two_digits(&mut out[14..16], year % 100);
    two_digits(&mut out[17..19], rem / 3600);
    two_digits(&mut out[20..22], rem % 3600 / 60);
    two_digits(&mut out[23..25], rem % 60);
    out
}

fn two_digits(out: &mut [u8], value: u64) {
    if let [tens, ones] = out {
        *tens = b'0' + (value / 10 % 10) as u8;
        *ones = b'0' + (value % 10) as u8;
    }
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31); Howard Hinnant's
/// algorithm, exact for the proleptic Gregorian calendar.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm; the inverse of `civil_from_days`).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn imf_fixdate_as_rfc_9110_shows_it() {
        // RFC 9110 §5.6.7's example.
        assert_eq!(&format_imf(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&format_imf(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&format_imf(1_709_164_800), b"Thu, 29 Feb 2024 00:00:00 GMT");
        assert_eq!(&format_imf(1_798_761_599), b"Thu, 31 Dec 2026 23:59:59 GMT");
    }

    #[test]
    fn the_text_changes_with_the_second_only() {
        let mut date = HttpDate::default();
        let start = UNIX_EPOCH + Duration::from_secs(784_111_777);
        date.update(start);
        assert_eq!(date.as_bytes(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        date.update(start + Duration::from_millis(999));
        assert_eq!(date.as_bytes(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        date.update(start + Duration::from_secs(1));
        assert_eq!(date.as_bytes(), b"Sun, 06 Nov 1994 08:49:38 GMT");
    }
}
