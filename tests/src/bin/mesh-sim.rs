//! The mesh-traffic simulator of the canary tests as a program, for the
//! demo: `mesh-sim --kubeconfig F --namespace NS --vs NAME [--service S]
//! [--rps 50] [--error-rate VERSION=FRACTION]... [--latency-ms VERSION=MS]...
//! [--port-file F]`. It prints (and writes to --port-file) the loopback
//! address Prometheus should scrape, and runs until killed.
#![forbid(unsafe_code)]

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result, anyhow, bail};
use gitops_tests::mesh::MeshSim;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut kubeconfig, mut namespace, mut vs, mut service, mut port_file) =
        (None, None, None, None, None::<PathBuf>);
    let mut rps = 50.0;
    let (mut errors, mut latencies) = (Vec::new(), Vec::new());
    let pair = |v: String| -> Result<(String, f64)> {
        let (k, n) = v
            .split_once('=')
            .ok_or_else(|| anyhow!("{v:?} is not VERSION=NUMBER"))?;
        Ok((
            k.to_string(),
            n.parse()
                .with_context(|| format!("{n:?} is not a number"))?,
        ))
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--kubeconfig" => kubeconfig = Some(PathBuf::from(value()?)),
            "--namespace" => namespace = Some(value()?),
            "--vs" => vs = Some(value()?),
            "--service" => service = Some(value()?),
            "--rps" => rps = value()?.parse().context("--rps")?,
            "--error-rate" => errors.push(pair(value()?)?),
            "--latency-ms" => latencies.push(pair(value()?)?),
            "--port-file" => port_file = Some(PathBuf::from(value()?)),
            other => bail!("unknown flag {other}"),
        }
    }
    let kubeconfig = kubeconfig.context("--kubeconfig is required")?;
    let namespace = namespace.context("--namespace is required")?;
    let vs = vs.context("--vs is required")?;
    let service = service.unwrap_or_else(|| vs.clone());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let config = runtime.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
        kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(anyhow::Error::from)
    })?;
    let sim = MeshSim::start(config, &namespace, &vs, 0, &service, rps)?;
    for (version, rate) in errors {
        sim.set_error_rate(&version, rate);
    }
    for (version, ms) in latencies {
        sim.set_latency_ms(&version, ms);
    }
    println!("{}", sim.addr());
    if let Some(file) = port_file {
        std::fs::write(&file, sim.addr().to_string())?;
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
