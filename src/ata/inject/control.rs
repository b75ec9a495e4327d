//! Fault injection changed while the VM runs (the control socket's `inject-add`,
//! `inject-del`, `inject-list` and `link`): one [`InjectControl`] shared by every port's
//! [`super::InjectingDevice`], which picks up new rules and link requests the next time it
//! looks (a submission, a completion pass). Rules carry ids, the `--inject` ones 1, 2, ...
//! in order; `inject-add` takes the next.
//!
//! Nothing here blocks for long: the lock is held for a copy of a short list.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::Rule;
use crate::sata::CompletionNotifier;

/// What `link` asks of a port's device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRequest {
    /// Drop off the link as a cable pull does (PhyRdy lost): for a while, or until `Up`.
    Down(Option<Duration>),
    /// Come back (COMINIT) if down.
    Up,
}

#[derive(Default)]
struct State {
    rules: Vec<(u32, Rule)>,
    next_id: u32,
    /// Bumped by every change of `rules`, so that devices copy them only then.
    generation: u64,
    link: [Option<LinkRequest>; 32],
    notifier: Option<CompletionNotifier>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Bumped by every change (rules or a link request): a device that saw this value has
    /// nothing to pick up and does not take the lock (one atomic load per submission).
    changes: AtomicU64,
}

/// Injection rules and link requests shared by the devices and the control socket.
#[derive(Clone, Default)]
pub struct InjectControl(Arc<Shared>);

impl std::fmt::Debug for InjectControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InjectControl")
            .field("rules", &self.lock().rules.len())
            .finish_non_exhaustive()
    }
}

impl InjectControl {
    /// A control holding `rules` (the command line's), ids 1, 2, ...
    pub fn new(rules: &[Rule]) -> Self {
        let c = InjectControl::default();
        for r in rules {
            c.add(r.clone());
        }
        c
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A number that changes whenever rules or link requests do.
    pub(super) fn changes(&self) -> u64 {
        self.0.changes.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.0.changes.fetch_add(1, Ordering::Release);
    }

    /// The descriptor the devices signal to get their port looked at (the completion
    /// notifier the event loop watches).
    pub fn bind_notifier(&self, notifier: CompletionNotifier) {
        self.lock().notifier = Some(notifier);
    }

    fn wake(state: &State) {
        if let Some(n) = &state.notifier {
            let _ = n.write(1);
        }
    }

    /// Add `rule`; returns its id.
    pub fn add(&self, rule: Rule) -> u32 {
        let mut s = self.lock();
        s.next_id += 1;
        let id = s.next_id;
        s.rules.push((id, rule));
        s.generation += 1;
        self.changed();
        Self::wake(&s);
        id
    }

    /// Remove the rule `id`; None if there is none.
    pub fn remove(&self, id: u32) -> Option<Rule> {
        let mut s = self.lock();
        let at = s.rules.iter().position(|(i, _)| *i == id)?;
        let (_, rule) = s.rules.remove(at);
        s.generation += 1;
        self.changed();
        Self::wake(&s);
        Some(rule)
    }

    /// Every rule with its id, in the order they apply.
    pub fn list(&self) -> Vec<(u32, Rule)> {
        self.lock().rules.clone()
    }

    /// Ask port `port`'s device to go down or come back (the last request wins).
    pub fn request_link(&self, port: u8, request: LinkRequest) {
        let mut s = self.lock();
        if let Some(slot) = s.link.get_mut(usize::from(port)) {
            *slot = Some(request);
        }
        self.changed();
        Self::wake(&s);
    }

    /// The rules for `port` if they changed since `generation`, with the new generation.
    pub(super) fn rules_since(&self, generation: u64, port: u8) -> Option<(u64, Vec<(u32, Rule)>)> {
        let s = self.lock();
        (s.generation != generation).then(|| {
            let rules = s
                .rules
                .iter()
                .filter(|(_, r)| r.port.is_none_or(|p| p == port))
                .cloned()
                .collect();
            (s.generation, rules)
        })
    }

    /// A pending link request for `port`, taken.
    pub(super) fn take_link(&self, port: u8) -> Option<LinkRequest> {
        self.lock().link.get_mut(usize::from(port))?.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> Rule {
        s.parse().unwrap()
    }

    #[test]
    fn ids_count_from_the_command_line_rules_and_removal_names_one() {
        let c = InjectControl::new(&[rule("port=0,op=read,error=unc"), rule("delay=5")]);
        assert_eq!(c.add(rule("port=1,drop")), 3);
        let ids: Vec<u32> = c.list().iter().map(|(i, _)| *i).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(c.remove(2).map(|r| r.text), Some("delay=5".into()));
        assert_eq!(c.remove(2), None);
        assert_eq!(c.add(rule("drop")), 4, "ids are never reused");
    }

    #[test]
    fn devices_see_their_port_s_rules_only_after_a_change() {
        let c = InjectControl::new(&[rule("port=0,drop"), rule("port=1,drop"), rule("delay=1")]);
        let (g, r) = c.rules_since(0, 1).unwrap();
        assert_eq!(r.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [2, 3]);
        assert!(c.rules_since(g, 1).is_none());
        c.remove(3);
        assert_eq!(c.rules_since(g, 1).unwrap().1.len(), 1);
    }

    #[test]
    fn link_requests_wake_the_loop_and_are_taken_once() {
        let c = InjectControl::default();
        let n: CompletionNotifier =
            Arc::new(vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap());
        c.bind_notifier(n.clone());
        let before = c.changes();
        c.request_link(2, LinkRequest::Down(None));
        assert_ne!(c.changes(), before, "devices look again");
        c.request_link(2, LinkRequest::Up);
        assert_eq!(n.read().unwrap(), 2);
        assert_eq!(c.take_link(2), Some(LinkRequest::Up));
        assert_eq!(c.take_link(2), None);
        c.request_link(40, LinkRequest::Up);
        assert_eq!(c.take_link(40), None);
    }
}
