//! A bounded reassembly buffer for IPv4 fragments (the guest fragments UDP datagrams larger than
//! its MTU, so DNS answers and UDP relays need them whole).
//!
//! Sets are keyed by (source, destination, identification, protocol) as RFC 791 says. Memory
//! is bounded three ways: a time limit per set, a cap on the number of sets and a cap on the
//! bytes held by all of them. A set with overlapping fragments (a classic evasion and
//! "teardrop" trick), fragments past the IPv4 size limit or a misaligned middle fragment is
//! dropped as a whole; an identical duplicate (a retransmission) is ignored.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use thiserror::Error;

/// The largest IPv4 payload: a 65,535-byte datagram minus the shortest header.
pub const MAX_IPV4_PAYLOAD: usize = 65535 - 20;

/// Non-final fragments carry a multiple of 8 bytes: offsets count in 8-byte units.
const FRAGMENT_UNIT: usize = 8;

/// What identifies the fragments of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub id: u16,
    pub protocol: u8,
}

/// One fragment, borrowing its payload from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Fragment<'a> {
    pub key: FragmentKey,
    /// Where the payload starts in the datagram, in bytes.
    pub offset: usize,
    pub more_fragments: bool,
    pub payload: &'a [u8],
}

impl Ipv4Fragment<'_> {
    fn end(&self) -> usize {
        self.offset + self.payload.len()
    }
}

/// A datagram put back together: its transport payload (a TCP, UDP or ICMP message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembled {
    pub key: FragmentKey,
    pub payload: Vec<u8>,
}

/// The bounds of a [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// How long a set may wait for its missing fragments (Linux waits 30 s: `ipfrag_time`).
    pub timeout: Duration,
    pub max_sets: usize,
    /// Payload bytes held by all sets together.
    pub max_bytes: usize,
}

impl Default for ReassemblyLimits {
    /// Enough for 16 datagrams of the largest size at once: a guest relaying UDP rarely has
    /// more than a few large datagrams in flight, and 1 MiB is small next to its memory.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_sets: 64,
            max_bytes: 1024 * 1024,
        }
    }
}

/// Why a fragment, and the set it belongs to, was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FragmentDropped {
    #[error("fragment overlaps another of its datagram")]
    Overlap,
    #[error("fragment ends past the largest IPv4 datagram")]
    Oversize,
    #[error("middle fragment is not a positive multiple of 8 bytes")]
    Misaligned,
    #[error("fragment disagrees with the datagram's end already received")]
    Inconsistent,
    #[error("the datagram would exceed the reassembly byte cap")]
    OverByteCap,
}

/// Fragments of one datagram received so far, kept sorted by offset and never overlapping.
#[derive(Debug)]
struct FragmentSet {
    key: FragmentKey,
    first_seen: Instant,
    pieces: Vec<(usize, Vec<u8>)>,
    /// The datagram's length, once the last fragment has come.
    total_len: Option<usize>,
    held_bytes: usize,
}

/// The buffer itself; the event loop calls `expire` from its timer (see `next_deadline`).
#[derive(Debug)]
pub struct Reassembler {
    limits: ReassemblyLimits,
    sets: Vec<FragmentSet>,
    held_bytes: usize,
}

impl Reassembler {
    pub fn new(limits: ReassemblyLimits) -> Self {
        Self {
            limits,
            sets: Vec::new(),
            held_bytes: 0,
        }
    }

    /// Payload bytes held by all sets; never above `limits.max_bytes`.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    pub fn set_count(&self) -> usize {
        self.sets.len()
    }

    /// When the oldest set expires, for the event loop's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.sets
            .iter()
            .map(|set| set.first_seen + self.limits.timeout)
            .min()
    }

    /// Drops the sets whose time is up.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.limits.timeout;
        let mut freed = 0;
        self.sets.retain(|set| {
            let alive = now.saturating_duration_since(set.first_seen) < timeout;
            if !alive {
                freed += set.held_bytes;
            }
            alive
        });
        self.held_bytes -= freed;
    }

    /// Adds one fragment; returns the datagram when it is complete.
    pub fn insert(
        &mut self,
        fragment: Ipv4Fragment<'_>,
        now: Instant,
    ) -> Result<Option<Reassembled>, FragmentDropped> {
        self.expire(now);
        let opened = self.find_or_open(fragment.key, now);
        let index = match self.add_to_set(opened, fragment) {
            Ok(index) => index,
            Err(dropped) => {
                self.remove_set(opened);
                return Err(dropped);
            }
        };
        if self.sets[index].is_complete() {
            let set = self.remove_set(index);
            return Ok(Some(set.into_datagram()));
        }
        Ok(None)
    }

    fn find_or_open(&mut self, key: FragmentKey, now: Instant) -> usize {
        if let Some(index) = self.sets.iter().position(|set| set.key == key) {
            return index;
        }
        // Sets are kept in arrival order, so the first is the oldest: under pressure it goes,
        // so a stuck set cannot block newer datagrams for the whole timeout.
        if self.sets.len() >= self.limits.max_sets.max(1) {
            self.remove_set(0);
        }
        self.sets.push(FragmentSet {
            key,
            first_seen: now,
            pieces: Vec::new(),
            total_len: None,
            held_bytes: 0,
        });
        self.sets.len() - 1
    }

    /// Adds `fragment` to the set at `index`; returns where that set is afterwards (evicting
    /// older sets moves it). On an error nothing has moved.
    fn add_to_set(
        &mut self,
        index: usize,
        fragment: Ipv4Fragment<'_>,
    ) -> Result<usize, FragmentDropped> {
        let Some(position) = self.sets[index].check(&fragment)? else {
            return Ok(index);
        };
        let needed = fragment.payload.len();
        if self.sets[index].held_bytes + needed > self.limits.max_bytes {
            return Err(FragmentDropped::OverByteCap);
        }
        let index = self.evict_oldest_except(index, needed);
        let set = &mut self.sets[index];
        if !fragment.more_fragments {
            set.total_len = Some(fragment.end());
        }
        set.pieces
            .insert(position, (fragment.offset, fragment.payload.to_vec()));
        set.held_bytes += needed;
        self.held_bytes += needed;
        Ok(index)
    }

    /// Frees the oldest other sets until `needed` more bytes fit under the cap; returns where
    /// the kept set is afterwards.
    fn evict_oldest_except(&mut self, keep: usize, needed: usize) -> usize {
        let mut keep = keep;
        let mut candidate = 0;
        while self.held_bytes + needed > self.limits.max_bytes && candidate < self.sets.len() {
            if candidate == keep {
                candidate += 1;
                continue;
            }
            self.remove_set(candidate);
            if candidate < keep {
                keep -= 1;
            }
        }
        keep
    }

    fn remove_set(&mut self, index: usize) -> FragmentSet {
        let set = self.sets.remove(index);
        self.held_bytes -= set.held_bytes;
        set
    }
}

impl FragmentSet {
    /// Where `fragment` goes among the pieces, `None` for an identical duplicate, or why the
    /// whole set must go.
    fn check(&self, fragment: &Ipv4Fragment<'_>) -> Result<Option<usize>, FragmentDropped> {
        let (start, end) = (fragment.offset, fragment.end());
        if end > MAX_IPV4_PAYLOAD {
            return Err(FragmentDropped::Oversize);
        }
        let len = fragment.payload.len();
        if fragment.more_fragments && (len == 0 || !len.is_multiple_of(FRAGMENT_UNIT)) {
            return Err(FragmentDropped::Misaligned);
        }
        let beyond_known_end = self.total_len.is_some_and(|total| end > total);
        let second_different_end =
            !fragment.more_fragments && self.total_len.is_some_and(|total| end != total);
        if beyond_known_end || second_different_end {
            return Err(FragmentDropped::Inconsistent);
        }
        if !fragment.more_fragments
            && self
                .pieces
                .last()
                .is_some_and(|(offset, piece)| offset + piece.len() > end)
        {
            return Err(FragmentDropped::Inconsistent);
        }
        let position = self.pieces.partition_point(|(offset, _)| *offset < start);
        if let Some((offset, piece)) = self.pieces.get(position) {
            if *offset == start && piece.as_slice() == fragment.payload {
                return Ok(None);
            }
            if *offset < end {
                return Err(FragmentDropped::Overlap);
            }
        }
        if let Some((offset, piece)) = position
            .checked_sub(1)
            .and_then(|before| self.pieces.get(before))
        {
            if offset + piece.len() > start {
                return Err(FragmentDropped::Overlap);
            }
        }
        Ok(Some(position))
    }

    /// Complete when the last fragment has come and the pieces, which never overlap, add up
    /// to its end.
    fn is_complete(&self) -> bool {
        self.total_len.is_some_and(|total| total == self.held_bytes)
    }

    fn into_datagram(self) -> Reassembled {
        let mut payload = Vec::with_capacity(self.held_bytes);
        for (_, piece) in self.pieces {
            payload.extend_from_slice(&piece);
        }
        Reassembled {
            key: self.key,
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_frames::{pattern, GUEST_V4, PUBLIC_V4};

    const KEY: FragmentKey = FragmentKey {
        src: GUEST_V4,
        dst: PUBLIC_V4,
        id: 9,
        protocol: 17,
    };

    fn piece(data: &[u8], offset: usize, len: usize, more: bool) -> Ipv4Fragment<'_> {
        Ipv4Fragment {
            key: KEY,
            offset,
            more_fragments: more,
            payload: &data[offset..offset + len],
        }
    }

    /// A 3000-byte datagram in fragments of 1480, 1480 and 40 bytes.
    fn three_pieces(data: &[u8]) -> [Ipv4Fragment<'_>; 3] {
        [
            piece(data, 0, 1480, true),
            piece(data, 1480, 1480, true),
            piece(data, 2960, 40, false),
        ]
    }

    fn feed<'a>(
        reassembler: &mut Reassembler,
        fragments: impl IntoIterator<Item = Ipv4Fragment<'a>>,
        now: Instant,
    ) -> Vec<Result<Option<Reassembled>, FragmentDropped>> {
        fragments
            .into_iter()
            .map(|fragment| reassembler.insert(fragment, now))
            .collect()
    }

    #[test]
    fn fragments_in_any_order_give_the_datagram() {
        let data = pattern(3000);
        let orders = [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]];
        for order in orders {
            let pieces = three_pieces(&data);
            let mut reassembler = Reassembler::new(ReassemblyLimits::default());
            let results = feed(
                &mut reassembler,
                order.map(|index| pieces[index]),
                Instant::now(),
            );
            assert_eq!(results[..2], [Ok(None), Ok(None)], "{order:?}");
            assert_eq!(
                results[2],
                Ok(Some(Reassembled {
                    key: KEY,
                    payload: data.clone()
                })),
                "{order:?}"
            );
            assert_eq!((reassembler.held_bytes(), reassembler.set_count()), (0, 0));
        }
    }

    #[test]
    fn an_identical_duplicate_is_ignored() {
        let data = pattern(3000);
        let [first, second, last] = three_pieces(&data);
        let mut reassembler = Reassembler::new(ReassemblyLimits::default());
        let results = feed(
            &mut reassembler,
            [first, first, second, second, last],
            Instant::now(),
        );
        assert_eq!(
            results[4],
            Ok(Some(Reassembled {
                key: KEY,
                payload: data
            }))
        );
    }

    #[test]
    fn overlapping_or_inconsistent_sets_are_dropped_whole() {
        let data = pattern(3000);
        let other = pattern(3100);
        let [first, second, last] = three_pieces(&data);
        let cases: [(Vec<Ipv4Fragment<'_>>, FragmentDropped); 6] = [
            (
                vec![first, piece(&data, 8, 16, true)],
                FragmentDropped::Overlap,
            ),
            (
                vec![second, piece(&data, 1400, 160, true)],
                FragmentDropped::Overlap,
            ),
            (
                vec![
                    first,
                    Ipv4Fragment {
                        payload: &other[1..1481],
                        ..first
                    },
                ],
                FragmentDropped::Overlap,
            ),
            (
                vec![last, piece(&data, 2960, 32, false)],
                FragmentDropped::Inconsistent,
            ),
            (
                vec![last, piece(&other, 3000, 16, true)],
                FragmentDropped::Inconsistent,
            ),
            (
                vec![piece(&data, 0, 100, true)],
                FragmentDropped::Misaligned,
            ),
        ];
        for (fragments, reason) in cases {
            let mut reassembler = Reassembler::new(ReassemblyLimits::default());
            let results = feed(&mut reassembler, fragments, Instant::now());
            assert_eq!(results.last(), Some(&Err(reason)));
            assert_eq!(
                (reassembler.held_bytes(), reassembler.set_count()),
                (0, 0),
                "{reason}"
            );
        }
    }

    #[test]
    fn a_fragment_past_the_largest_datagram_is_oversize() {
        let data = vec![0; 16];
        let beyond = Ipv4Fragment {
            key: KEY,
            offset: MAX_IPV4_PAYLOAD - 8,
            more_fragments: false,
            payload: &data,
        };
        let mut reassembler = Reassembler::new(ReassemblyLimits::default());
        assert_eq!(
            reassembler.insert(beyond, Instant::now()),
            Err(FragmentDropped::Oversize)
        );
    }

    #[test]
    fn an_incomplete_set_expires() {
        let data = pattern(3000);
        let [first, second, last] = three_pieces(&data);
        let limits = ReassemblyLimits {
            timeout: Duration::from_secs(30),
            ..ReassemblyLimits::default()
        };
        let mut reassembler = Reassembler::new(limits);
        let start = Instant::now();
        feed(&mut reassembler, [first, second], start);
        assert_eq!(reassembler.next_deadline(), Some(start + limits.timeout));
        reassembler.expire(start + Duration::from_secs(29));
        assert_eq!(reassembler.set_count(), 1);
        // Past the limit the last piece starts a new set instead of completing the old one.
        assert_eq!(reassembler.insert(last, start + limits.timeout), Ok(None));
        assert_eq!(reassembler.held_bytes(), 40);
    }

    #[test]
    fn the_set_cap_evicts_the_oldest_set() {
        let data = pattern(3000);
        let limits = ReassemblyLimits {
            max_sets: 2,
            ..ReassemblyLimits::default()
        };
        let mut reassembler = Reassembler::new(limits);
        let now = Instant::now();
        for id in 0..3 {
            let first = Ipv4Fragment {
                key: FragmentKey { id, ..KEY },
                ..piece(&data, 0, 1480, true)
            };
            assert_eq!(reassembler.insert(first, now), Ok(None));
        }
        assert_eq!(
            (reassembler.set_count(), reassembler.held_bytes()),
            (2, 2960)
        );
        let completes_oldest = Ipv4Fragment {
            key: FragmentKey { id: 0, ..KEY },
            ..piece(&data, 1480, 40, false)
        };
        assert_eq!(
            reassembler.insert(completes_oldest, now),
            Ok(None),
            "set 0 was evicted"
        );
    }

    #[test]
    fn the_byte_cap_evicts_older_sets_and_refuses_a_set_too_large_alone() {
        let data = pattern(3000);
        let limits = ReassemblyLimits {
            max_bytes: 3000,
            ..ReassemblyLimits::default()
        };
        let mut reassembler = Reassembler::new(limits);
        let now = Instant::now();
        let older = Ipv4Fragment {
            key: FragmentKey { id: 1, ..KEY },
            ..piece(&data, 0, 1480, true)
        };
        assert_eq!(reassembler.insert(older, now), Ok(None));
        let [first, second, _] = three_pieces(&data);
        feed(&mut reassembler, [first, second], now);
        assert_eq!(
            (reassembler.set_count(), reassembler.held_bytes()),
            (1, 2960),
            "the older set made room"
        );
        let too_far = piece(&data, 2960, 40, true);
        let past_cap = Ipv4Fragment {
            payload: &data[..48],
            ..too_far
        };
        assert_eq!(
            reassembler.insert(past_cap, now),
            Err(FragmentDropped::OverByteCap)
        );
        assert_eq!((reassembler.set_count(), reassembler.held_bytes()), (0, 0));
    }
}
