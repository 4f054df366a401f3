//! Canary releases through Git (DESIGN.md, "Canary releases through Git"):
//! the plan and weights as Git holds them ([`release`]), the in-place edit
//! of the VirtualService's text ([`yamledit`]), and the metric checks that
//! judge each step against a real Prometheus ([`checks`], [`prometheus`]).

pub mod checks;
pub mod file;
pub mod prometheus;
pub mod release;
pub mod run;
mod styles;
pub mod yamledit;
