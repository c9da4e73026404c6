//! `--shard K/N`: a release split over N CI runners, each verifying the
//! models whose name hashes to its share. The assignment depends on the
//! model's name only, so a model stays on its shard as others come and go.

use crate::suites::latency::stable_hash;

/// Shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// Parses `K/N` with `1 <= K <= N`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("--shard {text}: expected K/N with 1 <= K <= N, for example 2/4");
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }

    /// Whether the model of this name is verified on this shard.
    pub fn holds(self, model: &str) -> bool {
        stable_hash(model) % u64::from(self.count) == u64::from(self.index - 1)
    }

    pub fn count(self) -> u32 {
        self.count
    }

    pub fn index(self) -> u32 {
        self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!(
            Shard::parse("2/4").map(|s| s.to_string()),
            Ok("2/4".to_owned())
        );
        for bad in ["0/4", "5/4", "4", "a/b", "1/0"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_model_is_on_exactly_one_shard() {
        let shards: Vec<Shard> = (1..=4).map(|k| Shard { index: k, count: 4 }).collect();
        let mut sizes = [0; 4];
        for i in 0..1000 {
            let name = format!("eta-city-{i}");
            let on: Vec<usize> = (0..4).filter(|&k| shards[k].holds(&name)).collect();
            assert_eq!(on.len(), 1, "{name} is on shards {on:?}");
            sizes[on[0]] += 1;
        }
        // A hash spreads the names: no shard gets less than a fifth or more than a third.
        assert!(sizes.iter().all(|&s| (200..=333).contains(&s)), "{sizes:?}");
    }

    /// The assignment is part of what users rely on in CI: it must not move
    /// between releases of preflight.
    #[test]
    fn the_assignment_is_stable() {
        let on = |name: &str| (1..=4).find(|&k| Shard { index: k, count: 4 }.holds(name));
        let names = [
            "eta-madrid",
            "eta-lisbon",
            "eta-milan",
            "eta-nairobi",
            "eta-barcelona",
            "eta-bucharest",
        ];
        let assigned: Vec<Option<u32>> = names.iter().map(|n| on(n)).collect();
        insta::assert_debug_snapshot!(assigned);
    }
}
