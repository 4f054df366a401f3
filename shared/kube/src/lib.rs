//! `gitops-kube`: the one home of what both programs do with the cluster
//! (DESIGN.md, "Workspace layout"), beside the pure core `gitops-shared`,
//! which stays free of kube and tokio. [`client`] builds the API client;
//! [`resources`] maps Istio kinds and
//! `GitOpsSync` to API resources at the versions the server serves;
//! [`live`] lists what a namespace's plan is made against; [`retry`] runs
//! one API call with jittered retries; [`schema`] reads the kinds' list
//! types and defaults from the server's OpenAPI, for drift; [`gitopssync`] is the typed `GitOpsSync`
//! the CRD is generated from; [`errors`] classes API errors by status
//! code and error kind, never by their text.
#![forbid(unsafe_code)]

pub mod client;
pub mod errors;
pub mod gitopssync;
pub mod live;
pub mod resources;
pub mod retry;
pub mod schema;
