# Shared helpers for the scripts in this directory. Source it; do not run it.

# Repository root, whatever directory the script was started from.
GW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export GW_ROOT

die() { echo "error: $*" >&2; exit 1; }
say() { echo "==> $*" >&2; }

# ensure_packages PKG...: installs the Debian packages that are missing. As root it runs
# apt-get; otherwise it prints the exact command and stops.
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]}" >&2
    echo "run as root:  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # A stale package index makes apt-get refuse (e.g. libpcre2-dev against a newer
  # libpcre2-8-0), so refresh it first.
  apt-get update -q >/dev/null || die "apt-get update failed"
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# ensure_node: Node.js and npm. Debian's nodejs comes without npm (package npm); a nodejs
# from elsewhere (NodeSource's, say) includes npm and conflicts with Debian's npm package.
ensure_node() {
  ensure_packages nodejs
  command -v npm >/dev/null 2>&1 || ensure_packages npm
}

# npm_ci_oidc: the OpenID provider of the browser sign-in tests and demo (scripts/oidc), as
# locked in its package-lock.json.
npm_ci_oidc() {
  (cd "$GW_ROOT/scripts/oidc" && npm ci --silent --no-audit --no-fund) || die "npm ci in scripts/oidc failed"
}

# Packages needed to build the module and the vendored nginx.
BUILD_PACKAGES=(build-essential pkg-config libclang-dev libssl-dev libpcre2-dev zlib1g-dev binutils)

ensure_rust() {
  command -v cargo >/dev/null 2>&1 && return 0
  [ -x "$HOME/.cargo/bin/cargo" ] && { export PATH="$HOME/.cargo/bin:$PATH"; return 0; }
  die "cargo not found: install Rust (https://rustup.rs) and re-run"
}

# The nginx binary built by the vendored nginx-src (release profile).
vendored_nginx() {
  local f
  f=$(ls -t "$GW_ROOT"/target/release/build/nginx-sys-*/out/objs/nginx 2>/dev/null | head -n 1)
  [ -n "$f" ] || die "vendored nginx not built yet: run cargo build --release"
  echo "$f"
}

# Builds the module against the vendored nginx; prints the path of the .so (named as users
# load it). GW_FEATURES adds cargo features (scripts/test uses test-hooks).
build_vendored() {
  ensure_rust
  (cd "$GW_ROOT" && cargo build --release --quiet ${GW_FEATURES:+--features "$GW_FEATURES"}) \
    || die "cargo build failed"
  mkdir -p "$GW_ROOT/target/vendored"
  cp "$GW_ROOT/target/release/libngx_http_gateway_module.so" \
     "$GW_ROOT/target/vendored/ngx_http_gateway_module.so"
  echo "$GW_ROOT/target/vendored/ngx_http_gateway_module.so"
}
