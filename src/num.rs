//! Unsigned integers in decimal, without allocating: for query
//! parameters, signatures and error messages. Imports nothing of ours.

/// An unsigned integer in decimal, without allocating.
pub(crate) struct Itoa {
    buf: [u8; 20],
    start: usize,
}
impl Itoa {
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.buf.get(self.start..).unwrap_or_default()).unwrap_or("0")
    }
}
pub(crate) fn itoa(v: u32) -> Itoa {
    itoa64(u64::from(v))
}
pub(crate) fn itoa64(mut v: u64) -> Itoa {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    Itoa { buf, start: i }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn itoa_values() {
        for v in [0, 7, 10, 1000, u32::MAX] {
            assert_eq!(itoa(v).as_str(), v.to_string());
        }
        for v in [0, 17302026156815862, u64::MAX] {
            assert_eq!(itoa64(v).as_str(), v.to_string());
        }
    }
}
