//! The ids of queries sent upstream.
//!
//! The guest's own id is never sent: two guests (or one guest's two resolvers) may use the
//! same id at once, and an id a guest chose is one an attacker can predict. Ids come from a
//! xorshift64* generator the caller seeds (the supervisor seeds it from the OS), and an id
//! still in flight is never handed out again.

/// A xorshift64* generator: a few instructions per id, no dependency, and an even spread
/// over all 16-bit ids. Not cryptographic: it makes blind spoofing guess among 65,536 ids,
/// which is the protection a 16-bit id can give; the match on server and question adds to it.
#[derive(Debug, Clone)]
pub(crate) struct Xorshift64 {
    state: u64,
}

impl Xorshift64 {
    /// Seeds the generator; a zero seed (a fixed point of xorshift) is replaced by a constant.
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
        }
    }

    /// The next 64 pseudo-random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Picks a fresh id that `in_use` rejects for none of the pending queries.
///
/// Random picks first; the pending table holds at most a few thousand ids of 65,536, so a
/// free one is found in a pick or two. The sequential scan after a bounded number of picks
/// only guarantees termination; `None` means every id is in use.
pub(crate) fn fresh_id(rng: &mut Xorshift64, in_use: impl Fn(u16) -> bool) -> Option<u16> {
    const RANDOM_PICKS: usize = 16;
    for _ in 0..RANDOM_PICKS {
        // The high bits of xorshift64* are its best ones.
        let id = (rng.next_u64() >> 48) as u16;
        if !in_use(id) {
            return Some(id);
        }
    }
    let start = (rng.next_u64() >> 48) as u16;
    (0..=u16::MAX)
        .map(|offset| start.wrapping_add(offset))
        .find(|&id| !in_use(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_differ_between_seeds_and_spread_over_the_range() {
        let mut first = Xorshift64::new(1);
        let mut second = Xorshift64::new(2);
        let ids: Vec<u16> = (0..1000)
            .map(|_| fresh_id(&mut first, |_| false).expect("a free id"))
            .collect();
        let others: Vec<u16> = (0..1000)
            .map(|_| fresh_id(&mut second, |_| false).expect("a free id"))
            .collect();
        assert_ne!(ids, others);
        // 1000 draws from 65,536 values: about 8 repeats are expected, hundreds mean a bad spread.
        assert!(ids.iter().collect::<HashSet<_>>().len() > 980);
        assert!(ids.iter().any(|&id| id < 0x4000) && ids.iter().any(|&id| id >= 0xC000));
    }

    #[test]
    fn a_zero_seed_still_produces_ids() {
        let mut rng = Xorshift64::new(0);
        assert_ne!(rng.next_u64(), 0);
    }

    #[test]
    fn an_id_in_use_is_never_returned_and_a_full_table_gives_none() {
        let mut rng = Xorshift64::new(7);
        assert_eq!(fresh_id(&mut rng, |id| id != 4242), Some(4242));
        assert_eq!(fresh_id(&mut rng, |_| true), None);
    }
}
