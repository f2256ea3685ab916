//! Passes the cfg values nginx-sys detects (nginx features, OS, version) on to this crate,
//! and the vendored nginx build directory on to the t/ runner.
//!
//! Cargo only exposes `DEP_NGINX_*` to crates that depend on nginx-sys directly, which is why
//! nginx-sys is a direct dependency in Cargo.toml.

fn main() {
    println!("cargo::rerun-if-env-changed=DEP_NGINX_FEATURES_CHECK");
    println!(
        "cargo::rustc-check-cfg=cfg(ngx_feature, values({}))",
        std::env::var("DEP_NGINX_FEATURES_CHECK").unwrap_or_else(|_| "any()".to_string())
    );
    println!("cargo::rerun-if-env-changed=DEP_NGINX_FEATURES");
    if let Ok(features) = std::env::var("DEP_NGINX_FEATURES") {
        for feature in features.split(',').map(str::trim) {
            println!("cargo::rustc-cfg=ngx_feature=\"{feature}\"");
        }
    }

    println!("cargo::rerun-if-env-changed=DEP_NGINX_OS_CHECK");
    println!(
        "cargo::rustc-check-cfg=cfg(ngx_os, values({}))",
        std::env::var("DEP_NGINX_OS_CHECK").unwrap_or_else(|_| "any()".to_string())
    );
    println!("cargo::rerun-if-env-changed=DEP_NGINX_OS");
    if let Ok(os) = std::env::var("DEP_NGINX_OS") {
        println!("cargo::rustc-cfg=ngx_os=\"{os}\"");
    }

    // Version cfgs for APIs that differ between the nginx releases we support (1.22 .. 1.28).
    const VERSION_CHECKS: &[(u64, &str)] = &[(1_023_000, "nginx1_23"), (1_025_001, "nginx1_25_1")];
    for (_, name) in VERSION_CHECKS {
        println!("cargo::rustc-check-cfg=cfg({name})");
    }
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    if let Ok(version) = std::env::var("DEP_NGINX_VERSION_NUMBER") {
        let version: u64 = version
            .parse()
            .expect("DEP_NGINX_VERSION_NUMBER is a number");
        for (min, name) in VERSION_CHECKS {
            if version >= *min {
                println!("cargo::rustc-cfg={name}");
            }
        }
    }

    // The t/ runner defaults to the nginx binary built next to the bindings.
    println!("cargo::rerun-if-env-changed=DEP_NGINX_BUILD_DIR");
    if let Ok(dir) = std::env::var("DEP_NGINX_BUILD_DIR") {
        println!("cargo::rustc-env=DEP_NGINX_BUILD_DIR={dir}");
    }
}
