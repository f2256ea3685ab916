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

# Building a dynamic module for an installed nginx (scripts/build-for-nginx,
# scripts/build-c-jwt-module). A dynamic module loads only into an nginx of the same version
# whose configure arguments give the same "module signature".

# nginx_version NGINX: the version of an nginx binary (1.22.1).
nginx_version() { "$1" -v 2>&1 | sed -n 's#^nginx version: [a-zA-Z]*/\([0-9.]*\).*#\1#p'; }

# nginx_src_version DIR: the version of an nginx source tree.
nginx_src_version() { sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' "$1/src/core/nginx.h" 2>/dev/null; }

# nginx_source NGINX [DIR]: the source tree of NGINX's version, in this order: DIR (if not
# empty); Debian/Ubuntu's nginx-dev package (/usr/share/nginx/src, configured with its
# conf_flags); the nginx source vendored by the nginx-src crate when its version matches.
# Sets NGX_SRC and NGX_FLAGS_FROM ("conf_flags" or "nginx -V"); dies with what to do if none.
nginx_source() {
  local nginx=$1 version d
  NGX_SRC=${2:-}
  version=$(nginx_version "$nginx")
  [ -n "$version" ] || die "cannot read the version of $nginx"
  NGX_FLAGS_FROM="nginx -V"
  if [ -n "$NGX_SRC" ]; then
    [ -f "$NGX_SRC/src/core/nginx.h" ] || die "$NGX_SRC is not an nginx source tree (no src/core/nginx.h)"
  elif [ -f /usr/share/nginx/src/conf_flags ] && [ "$(nginx_src_version /usr/share/nginx/src)" = "$version" ]; then
    NGX_SRC=/usr/share/nginx/src
    NGX_FLAGS_FROM="conf_flags"
  else
    for d in "$HOME"/.cargo/registry/src/*/nginx-src-*/nginx; do
      if [ "$(nginx_src_version "$d")" = "$version" ]; then NGX_SRC="$d"; break; fi
    done
  fi
  if [ -z "$NGX_SRC" ]; then
    cat >&2 <<MSG
error: no nginx $version source tree found to build against.
  - Debian/Ubuntu: apt-get install nginx-dev   (provides /usr/share/nginx/src for this nginx)
  - otherwise: download nginx-$version.tar.gz from https://nginx.org/download/, unpack it and
    run: $0 ... --src /path/to/nginx-$version
MSG
    exit 1
  fi
  local sv
  sv=$(nginx_src_version "$NGX_SRC")
  if [ "$sv" != "$version" ]; then
    die "version mismatch: $nginx is $version but $NGX_SRC is nginx $sv; a module built against $sv
       would be refused by load_module. Use the source of nginx $version (--src DIR)."
  fi
}

# nginx_flags NGINX COPY [all]: the configure arguments for COPY (a copy of NGX_SRC) that
# reproduce NGINX's module signature, in the array NGX_FLAGS. Third-party and dynamic modules
# are left out (they do not change the core's signature and their sources are not here), and
# so is --builddir (the caller's own tree is used). With "all", the compiler and linker
# options of the binary (--with-cc-opt/--with-ld-opt) are kept with the conf_flags too.
nginx_flags() {
  local nginx=$1 copy=$2 keep_cc=${3:-} a all=()
  eval "all=($("$nginx" -V 2>&1 | sed -n 's/^configure arguments: //p'))"
  NGX_FLAGS=()
  if [ "$NGX_FLAGS_FROM" = "conf_flags" ]; then
    # shellcheck disable=SC1091
    . "$copy/conf_flags"
    NGX_FLAGS=("${NGX_CONF_FLAGS[@]}")
    [ -n "$keep_cc" ] || return 0
    for a in "${all[@]}"; do
      case "$a" in --with-cc-opt=*|--with-ld-opt=*) NGX_FLAGS+=("$a") ;; esac
    done
    return 0
  fi
  for a in "${all[@]}"; do
    case "$a" in
      --add-module=*|--add-dynamic-module=*|--with-*=dynamic|--builddir=*) ;;
      *) NGX_FLAGS+=("$a") ;;
    esac
  done
}

# nginx_prove_module NGINX SO DIR LOCATION: `nginx -t` loading SO into NGINX, with LOCATION
# as the body of a location (work files under DIR); dies if NGINX refuses it.
nginx_prove_module() {
  local nginx=$1 so=$2 check=$3 location=$4
  mkdir -p "$check/logs"
  cat >"$check/nginx.conf" <<CONF
load_module $so;
pid $check/nginx.pid;
error_log $check/logs/error.log;
events {}
http { access_log off; server { listen 127.0.0.1:1; location / { $location } } }
CONF
  "$nginx" -t -q -p "$check/" -c "$check/nginx.conf" -g "daemon off;" \
    || die "$nginx refused the module $so (see messages above)"
}

# nginx_configure DIR LOG ARG...: runs nginx's configure in DIR with ARG... (./configure in a
# release tarball or nginx-dev, auto/configure in a checkout of the nginx repository such as
# the nginx-src crate's); dies with the end of LOG if it fails.
nginx_configure() {
  local dir=$1 log=$2 conf=./configure
  shift 2
  [ -x "$dir/configure" ] || conf=auto/configure
  (cd "$dir" && "$conf" "$@" >"$log" 2>&1) \
    || { tail -n 20 "$log" >&2; die "configure failed (full log: $log)"; }
}
