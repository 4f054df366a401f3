//! Print `manifests/crds/gitopssync.yaml`, generated from the `GitOpsSync`
//! type: `cargo run -q -p gitops-kube --bin crdgen > manifests/crds/gitopssync.yaml`.

fn main() {
    print!("{}", gitops_kube::gitopssync::crd_yaml());
}
