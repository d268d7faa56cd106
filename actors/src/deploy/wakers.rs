//! Waking the agents' long polls: one [`Notify`] per agent name, so that a command made
//! ready for one agent wakes only that agent's poll (not every idle agent's).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

/// The agents' wake-up calls, by agent name. Entries live while a poll holds them.
#[derive(Debug, Default)]
pub struct AgentWakers {
    map: Mutex<HashMap<String, Weak<Notify>>>,
}

impl AgentWakers {
    /// The wake-up call of `agent`'s polls (hold it while waiting).
    pub fn for_agent(&self, agent: &str) -> Arc<Notify> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = map.get(agent).and_then(Weak::upgrade) {
            return live;
        }
        // Forget the agents nobody waits for any more before adding one.
        map.retain(|_, w| w.strong_count() > 0);
        let notify = Arc::new(Notify::new());
        map.insert(agent.to_string(), Arc::downgrade(&notify));
        notify
    }

    /// Wakes the polls of `agents` that are waiting.
    pub fn wake<'a>(&self, agents: impl IntoIterator<Item = &'a String>) {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for name in agents {
            if let Some(notify) = map.get(name).and_then(Weak::upgrade) {
                notify.notify_waiters();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_named_agent_is_woken() {
        let wakers = AgentWakers::default();
        let (a, b) = (wakers.for_agent("a"), wakers.for_agent("b"));
        assert!(Arc::ptr_eq(&a, &wakers.for_agent("a")));
        {
            let (wa, wb) = (a.notified(), b.notified());
            tokio::pin!(wa, wb);
            wa.as_mut().enable();
            wb.as_mut().enable();
            wakers.wake([&"a".to_string()]);
            let woke = tokio::time::timeout(std::time::Duration::from_secs(5), wa).await;
            assert!(woke.is_ok(), "a was not woken");
            let slept = tokio::time::timeout(std::time::Duration::from_millis(50), wb).await;
            assert!(slept.is_err(), "b was woken");
        }
        // Nobody holds c's: waking it does nothing, and entries of gone polls are dropped.
        drop((a, b));
        wakers.wake([&"c".to_string()]);
        let _c = wakers.for_agent("c");
        assert_eq!(wakers.map.lock().unwrap().len(), 1);
    }
}
