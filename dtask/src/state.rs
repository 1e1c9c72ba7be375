//! The application's resources, handed to tasks: a task parameter of type [`State<T>`] is
//! filled by the worker from the value given to [`Worker::state`](crate::Worker::state), and is
//! not part of the job (nor of `enqueue`'s arguments).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

/// A value of the application's (a database pool, an HTTP client, a mailer, settings) that a
/// task takes as a parameter, filled in by the worker.
///
/// ```no_run
/// #[derive(Clone)]
/// struct App {
///     greeting: String,
/// }
///
/// #[dtask::task(queue = "emails")]
/// async fn send_welcome(app: dtask::State<App>, user_id: u64) -> Result<(), std::io::Error> {
///     println!("{} {user_id}", app.greeting);
///     Ok(())
/// }
///
/// # async fn demo() -> Result<(), dtask::Error> {
/// let app = App { greeting: "welcome".into() };
/// send_welcome::enqueue(42).await?; // the state is not part of the job
/// send_welcome(dtask::State(app.clone()), 42).await.ok(); // the fn is still a plain fn
/// dtask::Worker::from_env()?.state(app).run().await?;
/// # Ok(()) }
/// # fn main() {}
/// ```
///
/// Every run gets a clone: share what must be shared through the value's own handles (a pool,
/// an `Arc`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct State<T>(pub T);

impl<T> Deref for State<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> State<T> {
    /// The value inside.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// A parameter type the worker fills in rather than the job: implemented for [`State<T>`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not `dtask::State<T>` for a `T: Clone + Send + Sync + 'static`",
    label = "cannot be injected into a task",
    note = "a task parameter spelled `State<..>` is filled by the worker: it must be `dtask::State<T>` with `T: Clone + Send + Sync + 'static`"
)]
pub trait Injected: Sized + Send + 'static {
    /// The value for one run, from the worker's states; `None` when the worker has none.
    fn inject(states: &States) -> Option<Self>;
}

impl<T: Clone + Send + Sync + 'static> Injected for State<T> {
    fn inject(states: &States) -> Option<Self> {
        states.get::<State<T>>().cloned()
    }
}

/// The states a worker was given, by type.
#[derive(Clone, Default)]
pub struct States {
    by_type: Arc<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for States {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "States({} value(s))", self.by_type.len())
    }
}

impl States {
    /// Adds (or replaces) the value of type `T`, handed to parameters of type `State<T>`.
    pub(crate) fn insert<T: Clone + Send + Sync + 'static>(&mut self, value: T) {
        Arc::make_mut(&mut self.by_type).insert(TypeId::of::<State<T>>(), Arc::new(State(value)));
    }

    /// The value of type `T`, when given.
    fn get<T: 'static>(&self) -> Option<&T> {
        self.by_type
            .get(&TypeId::of::<T>())
            .and_then(|value| value.downcast_ref())
    }

    /// Whether a value of the type `need` names was given.
    pub(crate) fn has(&self, need: &StateNeed) -> bool {
        self.by_type.contains_key(&(need.type_id)())
    }
}

/// A state a task takes, for the check a worker makes at start.
#[derive(Clone, Copy, Debug)]
pub struct StateNeed {
    /// The `TypeId` of the parameter's type, `State<T>`.
    pub type_id: fn() -> TypeId,
    /// Its name, for the error.
    pub type_name: fn() -> &'static str,
}

impl StateNeed {
    /// The need of a parameter of type `P` (a `State<T>`; checked by [`Injected`] elsewhere,
    /// so that a wrong type is reported once).
    pub const fn of<P: ?Sized + 'static>() -> StateNeed {
        StateNeed {
            type_id: TypeId::of::<P>,
            type_name: std::any::type_name::<P>,
        }
    }
}
