//! The compile-time rules of a flow body, as traits. `#[flow]` checks a body through them, so a
//! broken rule is one compile error at the token that breaks it, in these words. You never
//! implement or call them; they are public so that the errors name something you can look up.

use crate::driver::{IntoNode, NodeRun};
use crate::graph::NodeKind;
use crate::task::TaskOptions;
use std::marker::PhantomData;

/// A function a flow body can call as a task statement: a `#[task]` or a `#[flow]` (a
/// subflow), with arguments `Args` (a tuple). A plain function does not qualify: call it as
/// glue by wrapping the call in a block (`let url = { make_url(host) };`).
///
/// ```compile_fail
/// use weft::prelude::*;
///
/// fn helper(x: u32) -> u32 { x + 1 } // not a #[task]
///
/// #[flow]
/// async fn f() -> u32 {
///     let x = helper(1)?; // error: `helper` is not a #[task] or a #[flow]
///     x
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "this statement calls `{Self}`, which is not a #[task] or a #[flow]",
    label = "not a #[task]: a statement `f(..)` or `let x = f(..)?;` in a #[flow] body calls a task or a flow",
    note = "mark the function with #[task]; or run it as plain code (glue) by wrapping the call in a block: `let x = {{ f(..) }};` (an async fn: `let x = {{ f(..).await }};`)"
)]
pub trait TaskFn<Args> {
    /// What calling it returns.
    #[doc(hidden)]
    type Call: IntoNode;
    /// The task's options (a flow's: its name).
    #[doc(hidden)]
    fn options(&self) -> &'static TaskOptions {
        <Self::Call as IntoNode>::OPTIONS
    }
    /// A task or a subflow.
    #[doc(hidden)]
    fn kind(&self) -> NodeKind {
        <Self::Call as IntoNode>::KIND
    }
    /// Calls it.
    #[doc(hidden)]
    fn call(&self, args: Args) -> Self::Call;
    /// The type dependents get through `?`, for the handle of its output.
    #[doc(hidden)]
    fn value_type(&self) -> PhantomData<<<Self::Call as IntoNode>::Run as NodeRun>::Value> {
        PhantomData
    }
    /// The type dependents get without `?` (the value or the task's error).
    #[doc(hidden)]
    fn full_type(&self) -> PhantomData<<<Self::Call as IntoNode>::Run as NodeRun>::Full> {
        PhantomData
    }
}

macro_rules! task_fn {
    ($($a:ident),*) => {
        #[diagnostic::do_not_recommend]
        impl<F, C, $($a),*> TaskFn<($($a,)*)> for F
        where
            F: Fn($($a),*) -> C,
            C: IntoNode,
        {
            type Call = C;
            #[allow(non_snake_case)]
            fn call(&self, ($($a,)*): ($($a,)*)) -> C {
                self($($a),*)
            }
        }
    };
}
task_fn!();
task_fn!(A1);
task_fn!(A1, A2);
task_fn!(A1, A2, A3);
task_fn!(A1, A2, A3, A4);
task_fn!(A1, A2, A3, A4, A5);
task_fn!(A1, A2, A3, A4, A5, A6);
task_fn!(A1, A2, A3, A4, A5, A6, A7);
task_fn!(A1, A2, A3, A4, A5, A6, A7, A8);
task_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9);
task_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10);
task_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11);
task_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12);

/// A task output that several nodes take by value: each but the last gets a clone.
///
/// ```compile_fail
/// use weft::prelude::*;
///
/// struct Data(u32); // not Clone
/// #[task] fn make() -> Data { Data(1) }
/// #[task] fn eat(d: Data) -> u32 { d.0 }
///
/// #[flow]
/// async fn f() -> u32 {
///     let a = make()?;
///     let b = eat(a)?;
///     let c = eat(a)?; // error: `Data` is moved into more than one node, so it must be `Clone`
///     b + c
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "task output `{Self}` is moved into more than one node, so it must be `Clone`",
    label = "moved here while another node takes it too",
    note = "derive or implement `Clone`, wrap the value in `Arc`, or lend it to async tasks by reference (`&x`)"
)]
pub trait TakenTwice: Sized {
    /// The clone function of the output.
    #[doc(hidden)]
    fn clone_fn(_: PhantomData<Self>) -> fn(&Self) -> Self;
}

#[diagnostic::do_not_recommend]
impl<T: Clone> TakenTwice for T {
    fn clone_fn(_: PhantomData<T>) -> fn(&T) -> T {
        T::clone
    }
}

/// A task output that one node borrows (`&x`) and another takes by value: the taker gets a
/// clone.
#[diagnostic::on_unimplemented(
    message = "task output `{Self}` is borrowed by one node and taken by value by another, so it must be `Clone`",
    label = "taken by value here while another node borrows it",
    note = "take it by reference here too (`&x`), wrap it in `Arc`, or derive `Clone`"
)]
pub trait BorrowedAndTaken: Sized {
    /// The clone function of the output.
    #[doc(hidden)]
    fn clone_fn(_: PhantomData<Self>) -> fn(&Self) -> Self;
}

#[diagnostic::do_not_recommend]
impl<T: Clone> BorrowedAndTaken for T {
    fn clone_fn(_: PhantomData<T>) -> fn(&T) -> T {
        T::clone
    }
}

/// An input of a task with `retries`: each attempt gets a fresh copy.
///
/// ```compile_fail
/// use weft::prelude::*;
///
/// struct NotClone(u32);
///
/// #[task(retries = 2)]
/// async fn f(x: NotClone) -> u32 { x.0 } // error: `NotClone` must be `Clone` (retries)
/// ```
#[diagnostic::on_unimplemented(
    message = "task input `{Self}` must be `Clone` because the task has `retries`",
    label = "each attempt needs a fresh copy of this input",
    note = "derive or implement `Clone`, wrap the value in `Arc`, or take it by reference (`&T`) in an async task"
)]
pub trait RetriedInput: Sized {
    /// The clone function of the input.
    #[doc(hidden)]
    fn clone_fn(_: PhantomData<Self>) -> fn(&Self) -> Self;
}

#[diagnostic::do_not_recommend]
impl<T: Clone> RetriedInput for T {
    fn clone_fn(_: PhantomData<T>) -> fn(&T) -> T {
        T::clone
    }
}
