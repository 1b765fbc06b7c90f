//! Pages of long listings: every list a caller can make grow (trials, workers, a trial's logs
//! and metrics) is served a page at a time, so no reply outgrows the message limit.

/// Trials per page at most.
pub const MAX_TRIALS_PAGE: u64 = 1_000;
/// Workers per page at most.
pub const MAX_WORKERS_PAGE: u64 = 500;
/// Log lines per page at most (each at most a few KiB).
pub const MAX_LOGS_PAGE: u64 = 2_000;
/// Metric rows per page at most.
pub const MAX_METRICS_PAGE: u64 = 5_000;

/// A window of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Entries skipped.
    pub offset: u64,
    /// Entries served at most.
    pub limit: u64,
}

impl Page {
    /// Everything (internal readers).
    pub const ALL: Page = Page {
        offset: 0,
        limit: i64::MAX as u64,
    };

    /// The page a caller asked for: `limit` 0 or above `max` is `max`.
    pub fn requested(offset: u64, limit: u32, max: u64) -> Page {
        let limit = match u64::from(limit) {
            0 => max,
            limit => limit.min(max),
        };
        Page { offset, limit }
    }

    /// One more than the limit, to tell whether another page follows.
    pub fn probe(self) -> u64 {
        self.limit.saturating_add(1)
    }

    /// The page of `rows`, read as `probe` rows from the page's offset, and the offset of the
    /// next page if there is one.
    pub fn split<T>(self, mut rows: Vec<T>) -> (Vec<T>, Option<u64>) {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        if rows.len() > limit {
            rows.truncate(limit);
            (rows, Some(self.offset.saturating_add(self.limit)))
        } else {
            (rows, None)
        }
    }

    /// The page of a whole in-memory listing, and the offset of the next page.
    pub fn of<T>(self, all: Vec<T>) -> (Vec<T>, Option<u64>) {
        let skip = usize::try_from(self.offset).unwrap_or(usize::MAX);
        let probe = usize::try_from(self.probe()).unwrap_or(usize::MAX);
        self.split(all.into_iter().skip(skip).take(probe).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_a_listing_once_and_say_where_the_next_starts() {
        let all: Vec<u32> = (0..25).collect();
        let mut seen = Vec::new();
        let mut offset = 0;
        loop {
            let (page, next) = Page::requested(offset, 10, 1_000).of(all.clone());
            seen.extend(page);
            match next {
                Some(next) => offset = next,
                None => break,
            }
        }
        assert_eq!(seen, all);
        assert_eq!(Page::requested(0, 0, 7).limit, 7);
        assert_eq!(Page::requested(0, 99, 7).limit, 7);
        assert_eq!(Page::requested(u64::MAX, 5, 7).of(all), (vec![], None));
    }
}
