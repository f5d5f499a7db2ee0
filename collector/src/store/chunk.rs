//! A head series' samples, compressed as they arrive (the idea of
//! Prometheus's XOR chunks, byte-aligned): timestamps as zig-zag varint
//! delta-of-deltas, so a steady scrape interval costs one byte, and values
//! XORed with the previous one and stored without their zero bytes, so an
//! unchanged value costs one byte too.

#[derive(Debug, Default)]
pub struct Chunk {
    bytes: Vec<u8>,
    count: usize,
    last_ts: i64,
    last_delta: i64,
    last_bits: u64,
}

impl Chunk {
    pub fn push(&mut self, ts: i64, v: f64) {
        let bits = v.to_bits();
        if self.count == 0 {
            write_varint(&mut self.bytes, zigzag(ts));
            self.bytes.extend_from_slice(&bits.to_le_bytes());
            self.last_delta = 0;
        } else {
            let delta = ts.wrapping_sub(self.last_ts);
            write_varint(&mut self.bytes, zigzag(delta.wrapping_sub(self.last_delta)));
            self.last_delta = delta;
            write_xor(&mut self.bytes, bits ^ self.last_bits);
        }
        self.last_ts = ts;
        self.last_bits = bits;
        self.count += 1;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> ChunkIter<'_> {
        ChunkIter {
            bytes: &self.bytes,
            left: self.count,
            first: true,
            ts: 0,
            delta: 0,
            bits: 0,
        }
    }

    /// Takes the samples out; the next chunk starts with the capacity this
    /// one needed, so a steady series does not regrow (or over-allocate).
    pub fn take(&mut self) -> Vec<(i64, f64)> {
        let out = self.iter().collect();
        let needed = self.bytes.len();
        *self = Chunk {
            bytes: Vec::with_capacity(needed),
            ..Chunk::default()
        };
        out
    }
}

pub struct ChunkIter<'a> {
    bytes: &'a [u8],
    left: usize,
    first: bool,
    ts: i64,
    delta: i64,
    bits: u64,
}

impl Iterator for ChunkIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The bytes were written by `push` alone, so they always decode; a
        // short read ends the iteration rather than panicking.
        if self.first {
            self.first = false;
            self.ts = unzigzag(read_varint(&mut self.bytes)?);
            let (raw, rest) = self.bytes.split_first_chunk::<8>()?;
            self.bits = u64::from_le_bytes(*raw);
            self.bytes = rest;
        } else {
            let dod = unzigzag(read_varint(&mut self.bytes)?);
            self.delta = self.delta.wrapping_add(dod);
            self.ts = self.ts.wrapping_add(self.delta);
            self.bits ^= read_xor(&mut self.bytes)?;
        }
        Some((self.ts, f64::from_bits(self.bits)))
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// 0 for an unchanged value; otherwise a header byte (bit 7 set, trailing
/// zero bytes in bits 3..6, significant bytes − 1 in bits 0..3) and the
/// significant bytes.
fn write_xor(out: &mut Vec<u8>, x: u64) {
    if x == 0 {
        out.push(0);
        return;
    }
    let trail = x.trailing_zeros() / 8;
    let lead = x.leading_zeros() / 8;
    let n = 8 - lead - trail;
    out.push(0x80 | ((trail as u8) << 3) | (n as u8 - 1));
    let mid = (x >> (trail * 8)).to_le_bytes();
    out.extend_from_slice(&mid[..n as usize]);
}

fn read_xor(bytes: &mut &[u8]) -> Option<u64> {
    let (head, rest) = bytes.split_first()?;
    *bytes = rest;
    if *head == 0 {
        return Some(0);
    }
    let trail = u32::from((head >> 3) & 0x7);
    let n = usize::from(head & 0x7) + 1;
    let (mid, rest) = (bytes.get(..n)?, bytes.get(n..)?);
    *bytes = rest;
    let mut raw = [0u8; 8];
    raw[..n].copy_from_slice(mid);
    Some(u64::from_le_bytes(raw) << (trail * 8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn steady_scrapes_cost_two_bytes_a_sample() {
        let mut c = Chunk::default();
        for i in 0..1000 {
            c.push(1_700_000_000_000 + i * 15_000, 42.0);
        }
        assert!(c.bytes.len() < 2 * 1000 + 20, "{}", c.bytes.len());
        assert_eq!(c.iter().count(), 1000);
    }

    proptest! {
        #[test]
        fn round_trips(samples in proptest::collection::vec((any::<i64>(), any::<u64>()), 0..200)) {
            let mut c = Chunk::default();
            for (t, bits) in &samples {
                c.push(*t, f64::from_bits(*bits));
            }
            let back: Vec<(i64, u64)> = c.iter().map(|(t, v)| (t, v.to_bits())).collect();
            prop_assert_eq!(&back, &samples);
            prop_assert_eq!(c.take().len(), samples.len());
            prop_assert!(c.is_empty());
        }
    }
}
