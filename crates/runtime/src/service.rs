//! The one shape of a service: `service(&Context) -> Service`.
//!
//! A service crate exposes one entry, `pub async fn service(ctx: &Context) ->
//! anyhow::Result<Service>`: it reads its own settings from the context, asks the context for
//! the components it shares with other services of the same process (the floor, the chat
//! sessions, the e-mail intake: [`Context::shared`], made once per process by whoever asks
//! first), and answers with its HTTP routes, its long-running tasks and its readiness. The
//! binary only lists services; it never knows what they share.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use crate::routes::Table;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::health::{Health, Status};
use crate::snapshots::SnapshotStore;
use crate::topics::Topics;

/// A long-running part of a service: runs until the shutdown token is cancelled. An error (or
/// an early end) stops the whole process, with the task's name in the reason.
pub type Task = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

type Readiness = Box<dyn Fn() -> Status + Send + Sync>;

/// What a service contributes to its process.
pub struct Service {
    pub name: &'static str,
    pub routes: Table,
    pub tasks: Vec<(&'static str, Task)>,
    readiness: Readiness,
}

impl Service {
    /// A service with no routes, no tasks, and always ready.
    pub fn new(name: &'static str) -> Self {
        Self { name, routes: Table::new(), tasks: Vec::new(), readiness: Box::new(Status::ready) }
    }

    #[must_use]
    pub fn routes(mut self, routes: Table) -> Self {
        self.routes = std::mem::take(&mut self.routes).merge(routes);
        self
    }

    #[must_use]
    pub fn task(mut self, name: &'static str, task: impl Future<Output = anyhow::Result<()>> + Send + 'static) -> Self {
        self.tasks.push((name, Box::pin(task)));
        self
    }

    /// What `/health/ready/<name>` answers.
    #[must_use]
    pub fn ready_when(mut self, probe: impl Fn() -> Status + Send + Sync + 'static) -> Self {
        self.readiness = Box::new(probe);
        self
    }

    /// The parts, for the binary that runs it.
    pub fn into_parts(self) -> (&'static str, Table, Vec<(&'static str, Task)>, Readiness) {
        (self.name, self.routes, self.tasks, self.readiness)
    }
}

/// What every service of a process is given, and what they share.
pub struct Context {
    /// The settings every service shares; a service's own are [`Context::section`].
    pub settings: Settings,
    sections: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    pub topics: Topics,
    pub health: Health,
    pub snapshots: SnapshotStore,
    pub shutdown: CancellationToken,
    shared: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
    background: Mutex<Vec<(&'static str, Task)>>,
}

impl Context {
    pub fn new(settings: Settings, topics: Topics, shutdown: CancellationToken) -> Self {
        let snapshots = SnapshotStore::new(settings.data_dir.join("snapshots"));
        Self {
            settings,
            sections: HashMap::new(),
            topics,
            health: Health::new(),
            snapshots,
            shutdown,
            shared: Mutex::new(HashMap::new()),
            background: Mutex::new(Vec::new()),
        }
    }

    /// Hands the services `section` (the binary adds every service's, as loaded).
    #[must_use]
    pub fn with_section<T: crate::config::Section>(mut self, section: T) -> Self {
        self.sections.insert(TypeId::of::<T>(), Box::new(section));
        self
    }

    /// A service's own settings (`[ucs]`, ...): as loaded, or the defaults when the binary
    /// gave none.
    pub fn section<T: crate::config::Section>(&self) -> T {
        self.sections.get(&TypeId::of::<T>()).and_then(|b| b.downcast_ref::<T>()).cloned().unwrap_or_default()
    }

    /// The process's one `T`, made by `make` the first time any service asks. `make` may
    /// itself ask for other shared components and start background tasks.
    pub fn shared<T: Clone + Send + Sync + 'static>(&self, make: impl FnOnce(&Self) -> anyhow::Result<T>) -> anyhow::Result<T> {
        if let Some(existing) = self.existing::<T>() {
            return Ok(existing);
        }
        // Not under the lock: `make` may ask for other components.
        let made = make(self)?;
        self.lock_shared().insert(TypeId::of::<T>(), Box::new(made.clone()));
        Ok(made)
    }

    /// The process's `T` if some service already made it.
    pub fn existing<T: Clone + 'static>(&self) -> Option<T> {
        self.lock_shared().get(&TypeId::of::<T>()).and_then(|b| b.downcast_ref::<T>()).cloned()
    }

    /// A task of a shared component (a projection's follower), run beside the services'.
    pub fn background(&self, name: &'static str, task: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        self.background.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((name, Box::pin(task)));
    }

    /// The shared components' tasks, once every service is made.
    pub fn take_background(&self) -> Vec<(&'static str, Task)> {
        std::mem::take(&mut *self.background.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn lock_shared(&self) -> std::sync::MutexGuard<'_, HashMap<TypeId, Box<dyn Any + Send + Sync>>> {
        self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn context() -> Context {
        Context::new(Settings::default(), Topics::load(None, "").unwrap(), CancellationToken::new())
    }

    #[test]
    fn a_shared_component_is_made_once_per_process() {
        let ctx = context();
        let made = Arc::new(AtomicUsize::new(0));
        let make = |_: &Context| {
            made.fetch_add(1, Ordering::SeqCst);
            Ok(Arc::new(7_u32))
        };
        let a = ctx.shared(make).unwrap();
        let b = ctx.shared(|_: &Context| -> anyhow::Result<Arc<u32>> { unreachable!("made twice") }).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(made.load(Ordering::SeqCst), 1);
        assert!(ctx.existing::<Arc<u64>>().is_none());
    }
}
