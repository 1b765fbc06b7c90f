//! The worker's side of placement: which of its slots has room for another trial. It keeps
//! the coordinator's rule (`coordinator/src/placement.rs`): a slot holds one unshared trial
//! (a trial on several slots holds each of them alone), or up to K trials of `gpu_share` K,
//! never trials of different shares; a slot behind a stalled training thread holds nothing
//! new. The worker asks for work only while a slot has room, on that slot, and the
//! coordinator decides which trial goes where.

use std::collections::BTreeSet;

/// The slots one running trial holds and its `gpu_share` (1 when unshared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holding {
    pub slots: Vec<u32>,
    pub share: u32,
}

/// The first of the slots `0..slot_count` that can take another trial: an idle one, or one
/// holding fewer than K trials of share K; `None` when every slot is full or stalled.
pub(crate) fn slot_with_room(
    slot_count: u32,
    holdings: &[Holding],
    stalled: &BTreeSet<u32>,
) -> Option<u32> {
    (0..slot_count)
        .filter(|slot| !stalled.contains(slot))
        .find(|slot| {
            let on_slot: Vec<&Holding> = holdings
                .iter()
                .filter(|holding| holding.slots.contains(slot))
                .collect();
            let Some(first) = on_slot.first() else {
                return true;
            };
            let share = first.share;
            share > 1
                && on_slot.iter().all(|holding| holding.share == share)
                && on_slot.len() < share as usize
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(slots: &[u32], share: u32) -> Holding {
        Holding {
            slots: slots.to_vec(),
            share,
        }
    }

    #[test]
    fn an_idle_slot_has_room_and_an_unshared_one_has_none() {
        let none = BTreeSet::new();
        assert_eq!(slot_with_room(2, &[], &none), Some(0));
        assert_eq!(slot_with_room(2, &[holding(&[0], 1)], &none), Some(1));
        assert_eq!(
            slot_with_room(2, &[holding(&[0], 1), holding(&[1], 1)], &none),
            None
        );
        assert_eq!(slot_with_room(1, &[], &BTreeSet::from([0])), None);
    }

    #[test]
    fn a_trial_on_several_slots_holds_each_of_them_alone() {
        let none = BTreeSet::new();
        assert_eq!(slot_with_room(3, &[holding(&[0, 1], 1)], &none), Some(2));
        assert_eq!(slot_with_room(2, &[holding(&[1, 0], 1)], &none), None);
    }

    #[test]
    fn a_shared_slot_has_room_until_its_share_is_full() {
        let none = BTreeSet::new();
        let two = [holding(&[0], 2)];
        assert_eq!(slot_with_room(1, &two, &none), Some(0));
        let full = [holding(&[0], 2), holding(&[0], 2)];
        assert_eq!(slot_with_room(1, &full, &none), None);
        let four = [holding(&[0], 4), holding(&[0], 4), holding(&[0], 4)];
        assert_eq!(slot_with_room(1, &four, &none), Some(0));
        assert_eq!(slot_with_room(1, &four, &BTreeSet::from([0])), None);
    }
}
