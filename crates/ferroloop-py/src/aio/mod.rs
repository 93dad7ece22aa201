//! The asyncio objects: the native Future (with its await iterator) and
//! Task, the type slots PyO3 leaves to us, and the loop methods that make
//! them (`create_future`, `create_task`, the latter with its own fastcall entry
//! point in `fastcall`). They reach the scheduler by
//! handing it jobs (`task::STEP`, `task::WAKEUP`); it never names them.

pub(crate) mod fastcall;
pub(crate) mod future;
pub(crate) mod slots;
pub(crate) mod task;
